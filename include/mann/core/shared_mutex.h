// SharedMutex: a reader/writer lock that prefers writers.
//
// std::shared_mutex on glibc prefers readers: under a steady stream of searches a writer can wait
// indefinitely (a test with two searching threads starved eight writers for minutes). This lock
// makes new readers queue behind a waiting writer. It meets the standard SharedMutex
// requirements, so std::unique_lock and std::shared_lock work with it.
//
// Not recursive: a thread must not take it twice, in either mode.
#pragma once

#include <pthread.h>

namespace mann {

class SharedMutex {
 public:
  SharedMutex();
  ~SharedMutex();
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void lock();
  bool try_lock();
  void unlock();
  void lock_shared();
  bool try_lock_shared();
  void unlock_shared();

 private:
  pthread_rwlock_t rw_;
};

}  // namespace mann
