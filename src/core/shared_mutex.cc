#include <cstdio>
#include <cstdlib>

#include <mann/core/shared_mutex.h>

namespace mann {
namespace {

// pthread_rwlock calls fail only on misuse (deadlock by recursion, unlocking an unheld lock) or
// resource exhaustion at initialization; neither can be recovered from, so stop with the reason.
void Check(int rc, const char* what) {
  if (rc != 0) {
    std::fprintf(stderr, "fatal: %s failed with error %d\n", what, rc);
    std::abort();
  }
}

}  // namespace

SharedMutex::SharedMutex() {
  pthread_rwlockattr_t attr;
  Check(pthread_rwlockattr_init(&attr), "pthread_rwlockattr_init");
  Check(pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP),
        "pthread_rwlockattr_setkind_np");
  Check(pthread_rwlock_init(&rw_, &attr), "pthread_rwlock_init");
  pthread_rwlockattr_destroy(&attr);
}

SharedMutex::~SharedMutex() { pthread_rwlock_destroy(&rw_); }

void SharedMutex::lock() { Check(pthread_rwlock_wrlock(&rw_), "pthread_rwlock_wrlock"); }
bool SharedMutex::try_lock() { return pthread_rwlock_trywrlock(&rw_) == 0; }
void SharedMutex::unlock() { Check(pthread_rwlock_unlock(&rw_), "pthread_rwlock_unlock"); }
void SharedMutex::lock_shared() { Check(pthread_rwlock_rdlock(&rw_), "pthread_rwlock_rdlock"); }
bool SharedMutex::try_lock_shared() { return pthread_rwlock_tryrdlock(&rw_) == 0; }
void SharedMutex::unlock_shared() { unlock(); }

}  // namespace mann
