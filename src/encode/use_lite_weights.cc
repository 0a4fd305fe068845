// Loader for TF.js graph-model weights: model.json's weightsManifest plus the shard files.
#include <bit>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <system_error>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <openssl/evp.h>

#include <mann/encode/use_lite_encoder.h>

namespace mann::encode {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr std::size_t kWordBytes = 4;  // float32 and int32, the only dtypes accepted
// Leads every NotFound message, so a reader sees the remedy first.
constexpr std::string_view kMissing = "model files missing: run scripts/fetch-model.sh";

std::string ShapeString(std::span<const std::int64_t> shape) {
  std::string s = "[";
  for (std::size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

Result<std::string> ReadText(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return NotFoundError(std::string(kMissing) + " " + path.parent_path().string() +
                         " (cannot open " + path.string() + ")");
  }
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return DataLossError("cannot read " + path.string());
  return text;
}

// One manifest entry as parsed, before layout.
struct ParsedEntry {
  std::string name;
  std::string dtype;
  std::vector<std::int64_t> shape;
  std::size_t count = 0;
};

// Parses weights[i] of a group; `where` names it for messages.
Result<ParsedEntry> ParseEntry(const json::value& v, const std::string& where) {
  const json::object* o = v.if_object();
  if (!o) return DataLossError(where + " is not an object");
  ParsedEntry e;
  const json::value* name = o->if_contains("name");
  if (!name || !name->is_string()) return DataLossError(where + " has no string \"name\"");
  e.name = std::string(name->get_string());
  const std::string tensor = where + " (tensor " + e.name + ")";

  const json::value* dtype = o->if_contains("dtype");
  if (!dtype || !dtype->is_string()) return DataLossError(tensor + " has no string \"dtype\"");
  e.dtype = std::string(dtype->get_string());
  if (e.dtype != "float32" && e.dtype != "int32") {
    return DataLossError(tensor + " has dtype \"" + e.dtype +
                         "\"; only float32 and int32 are supported");
  }
  if (o->contains("quantization")) {
    return DataLossError(tensor + " is quantized; only unquantized weights are supported");
  }

  const json::value* shape = o->if_contains("shape");
  if (!shape || !shape->is_array()) return DataLossError(tensor + " has no array \"shape\"");
  e.count = 1;
  for (const json::value& d : shape->get_array()) {
    // A bound on each dimension keeps the element count from overflowing; no real tensor of
    // this model comes near it.
    constexpr std::int64_t kMaxDim = std::int64_t{1} << 31;
    if (!d.is_int64() || d.get_int64() < 0 || d.get_int64() > kMaxDim) {
      return DataLossError(tensor + " has a shape entry that is not an integer in [0, 2^31]");
    }
    e.shape.push_back(d.get_int64());
    e.count *= static_cast<std::size_t>(d.get_int64());
    if (e.count > (std::size_t{1} << 34)) return DataLossError(tensor + " is implausibly large");
  }
  return e;
}

}  // namespace

namespace {

// SHA512SUMS, as scripts/fetch-model.sh writes it: "<hex>  <file name>" per line. Absent: an
// empty map (a model directory assembled by hand is not refused for lacking it).
std::map<std::string, std::string> ReadChecksums(const fs::path& dir) {
  std::map<std::string, std::string> sums;
  std::ifstream in(dir / "SHA512SUMS");
  std::string line;
  while (std::getline(in, line)) {
    const std::size_t space = line.find("  ");
    if (space != 128) continue;
    sums[line.substr(space + 2)] = line.substr(0, space);
  }
  return sums;
}

std::string Sha512Hex(const char* data, std::size_t size) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int length = 0;
  EVP_Digest(data, size, md, &length, EVP_sha512(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned int i = 0; i < length; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 15];
  }
  return out;
}

// A file whose bytes differ from the checksum the fetch recorded: damaged (truncated, edited,
// or half-written by an interrupted copy), even when its size still fits the manifest.
Status CheckSum(const std::map<std::string, std::string>& sums, const fs::path& path,
                const char* data, std::size_t size) {
  const auto it = sums.find(path.filename().string());
  if (it == sums.end() || Sha512Hex(data, size) == it->second) return Status::Ok();
  return DataLossError(fmt::format(
      "{} does not match its checksum in {}: the file is damaged; run scripts/fetch-model.sh {} "
      "to fetch the model again",
      path.string(), (path.parent_path() / "SHA512SUMS").string(), path.parent_path().string()));
}

}  // namespace

Result<UseLiteWeights> UseLiteWeights::Load(const std::string& model_dir) {
  static_assert(sizeof(float) == kWordBytes);
  if constexpr (std::endian::native != std::endian::little) {
    return FailedPreconditionError("TF.js weights are little-endian; this host is not");
  }

  const fs::path dir(model_dir);
  UseLiteWeights w;
  w.manifest_path_ = (dir / "model.json").string();
  MANN_ASSIGN_OR_RETURN(const std::string text, ReadText(w.manifest_path_));
  const std::map<std::string, std::string> sums = ReadChecksums(dir);
  MANN_RETURN_IF_ERROR(CheckSum(sums, w.manifest_path_, text.data(), text.size()));
  // The tokenizer reads vocab.json on its own; its bytes are checked here with the rest.
  if (sums.contains("vocab.json")) {
    MANN_ASSIGN_OR_RETURN(const std::string vocab, ReadText(dir / "vocab.json"));
    MANN_RETURN_IF_ERROR(CheckSum(sums, dir / "vocab.json", vocab.data(), vocab.size()));
  }

  std::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec) return DataLossError(w.manifest_path_ + " is not valid JSON: " + ec.message());
  const json::value* manifest =
      root.is_object() ? root.get_object().if_contains("weightsManifest") : nullptr;
  if (!manifest || !manifest->is_array() || manifest->get_array().empty()) {
    return DataLossError(w.manifest_path_ + " has no non-empty \"weightsManifest\" array");
  }

  // Pass 1: parse every group, so the buffer can be sized once.
  struct Group {
    std::vector<fs::path> paths;
    std::vector<ParsedEntry> entries;
    std::size_t bytes = 0;  // what the entries need
  };
  std::vector<Group> groups;
  std::size_t total_bytes = 0;
  for (std::size_t g = 0; g < manifest->get_array().size(); ++g) {
    const std::string where = w.manifest_path_ + ": weightsManifest[" + std::to_string(g) + "]";
    const json::value& gv = manifest->get_array()[g];
    const json::value* paths = gv.is_object() ? gv.get_object().if_contains("paths") : nullptr;
    const json::value* weights = gv.is_object() ? gv.get_object().if_contains("weights") : nullptr;
    if (!paths || !paths->is_array() || !weights || !weights->is_array()) {
      return DataLossError(where + " needs arrays \"paths\" and \"weights\"");
    }
    Group group;
    for (const json::value& p : paths->get_array()) {
      // Shard names are plain file names beside model.json; anything else could escape the
      // model directory.
      if (!p.is_string() || p.get_string().empty() ||
          fs::path(std::string(p.get_string())).filename() != std::string(p.get_string())) {
        return DataLossError(where + " has a path that is not a plain file name");
      }
      group.paths.push_back(dir / std::string(p.get_string()));
    }
    const json::array& wa = weights->get_array();
    for (std::size_t i = 0; i < wa.size(); ++i) {
      MANN_ASSIGN_OR_RETURN(ParsedEntry e,
                            ParseEntry(wa[i], where + ".weights[" + std::to_string(i) + "]"));
      group.bytes += e.count * kWordBytes;
      group.entries.push_back(std::move(e));
    }
    total_bytes += group.bytes;
    groups.push_back(std::move(group));
  }

  // Pass 2: read each group's shards into its slice of the buffer and lay out its entries.
  w.buffer_.resize(total_bytes / kWordBytes);
  char* const base = reinterpret_cast<char*>(w.buffer_.data());
  std::size_t group_start = 0;
  for (const Group& group : groups) {
    std::size_t have = 0;  // bytes of this group read so far
    std::vector<std::size_t> file_ends;
    for (const fs::path& path : group.paths) {
      const std::uintmax_t size = fs::file_size(path, ec);
      if (ec) {
        return NotFoundError(std::string(kMissing) + " (shard " + path.string() + ": " +
                             ec.message() + ")");
      }
      if (size > group.bytes - have) {
        return DataLossError("shard " + path.string() + " is " + std::to_string(size) +
                             " bytes, which runs past the " + std::to_string(group.bytes) +
                             " bytes the manifest in " + w.manifest_path_ + " lays out");
      }
      std::ifstream in(path, std::ios::binary);
      in.read(base + group_start + have, static_cast<std::streamsize>(size));
      if (!in || static_cast<std::uintmax_t>(in.gcount()) != size) {
        return DataLossError("cannot read shard " + path.string());
      }
      MANN_RETURN_IF_ERROR(CheckSum(sums, path, base + group_start + have, size));
      have += size;
      file_ends.push_back(have);
    }

    std::size_t offset = 0;  // bytes into this group
    for (const ParsedEntry& e : group.entries) {
      const std::size_t end = offset + e.count * kWordBytes;
      if (end > have) {
        // Name the shard the tensor starts in (the last one when it starts past all of them).
        std::size_t file = 0;
        while (file + 1 < file_ends.size() && file_ends[file] <= offset) ++file;
        const std::string shard =
            group.paths.empty() ? std::string("(no shards)") : group.paths[file].string();
        return DataLossError("shards are short: tensor " + e.name + " needs bytes [" +
                             std::to_string(offset) + ", " + std::to_string(end) +
                             ") of its group but the shards end at " + std::to_string(have) +
                             " (shard " + shard + "; manifest " + w.manifest_path_ + ")");
      }
      if (w.entries_.contains(e.name)) {
        return DataLossError(w.manifest_path_ + " lists tensor " + e.name + " twice");
      }
      w.entries_.emplace(e.name, Entry{.dtype = e.dtype,
                                       .shape = e.shape,
                                       .offset = (group_start + offset) / kWordBytes,
                                       .count = e.count});
      offset = end;
    }
    group_start += group.bytes;
  }
  return w;
}

Result<std::span<const float>> UseLiteWeights::Float(std::string_view name,
                                                     std::span<const std::int64_t> shape) const {
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    return DataLossError(manifest_path_ + " has no tensor " + std::string(name));
  }
  const Entry& e = it->second;
  if (e.dtype != "float32") {
    return DataLossError(manifest_path_ + ": tensor " + std::string(name) + " is " + e.dtype +
                         ", expected float32");
  }
  if (!std::equal(e.shape.begin(), e.shape.end(), shape.begin(), shape.end())) {
    return DataLossError(manifest_path_ + ": tensor " + std::string(name) + " has shape " +
                         ShapeString(e.shape) + ", expected " + ShapeString(shape));
  }
  return std::span<const float>(buffer_.data() + e.offset, e.count);
}

}  // namespace mann::encode
