// SharedEmbeddingCache: the second tier of the Router's embedding cache, shared by every replica
// that reaches it (cache::RedisEmbeddingCache keeps it in Redis), so that a text one replica
// embedded is not embedded again by another.
//
// Keys are content digests (Router's SHA-256 of the lane's provenance and the encoder's input),
// so a key always names the same vector: nothing is ever invalidated, and an in-process copy in
// front of the tier can never be stale.
//
// A tier is an optimisation, never a dependency: it does not fail. A value it cannot find,
// read or decode is a miss, and a value it cannot store is dropped; the implementation counts
// and logs such cases itself. The Router then computes the vector as it would without a tier.
//
// Lives in encode, with no Redis in it, so that the encoders and the Router do not depend on
// hiredis; src/cache implements it.
//
// Thread-safety: implementations must be safe to call concurrently.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include <mann/encode/encoder.h>

namespace mann::encode {

class SharedEmbeddingCache {
 public:
  virtual ~SharedEmbeddingCache() = default;

  // Fills out (out->size() == keys.size()) with the vector stored under each key, or an empty
  // Vector for a miss: nothing stored, a value that is not `dimension` finite floats, or a tier
  // that cannot be reached. Implementations fetch all the keys in as few round trips as they can.
  virtual void GetMany(std::span<const std::string> keys, std::size_t dimension,
                       std::vector<Vector>* out) = 0;

  // Stores values[i] under keys[i] (the spans have equal length), overwriting what is there.
  virtual void PutMany(std::span<const std::string> keys, std::span<const Vector> values) = 0;
};

}  // namespace mann::encode
