// Whole-file reads and crash-safe whole-file writes, for small state and configuration files.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace flotilla {

// The file's contents. Errors (NotFound, PermissionDenied, ...) name the file, after `what`
// when given ("cannot read config file /x.yaml: ..."); a file larger than `max_bytes` is
// InvalidArgument.
absl::StatusOr<std::string> readFileToString(const std::string& path,
                                             size_t max_bytes = size_t{16} << 20,
                                             std::string_view what = {});

// Replaces `path` with `contents` so that after a crash the file holds either the old or the
// new contents, never a mix: writes PATH.tmp, fsyncs it, renames it over PATH and fsyncs the
// directory. `mode` is the new file's permission bits.
absl::Status writeFileAtomically(const std::string& path, std::string_view contents,
                                 unsigned mode = 0600);

}  // namespace flotilla
