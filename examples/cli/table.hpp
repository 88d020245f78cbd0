/// \file
/// The command-line tool's input side: numeric columns chosen by name from a CSV or .npy file.
///
/// Both readers are strict. Every rejection is an input_error whose message starts with where
/// the problem is, in the form compilers use so that editors can jump to it:
///
///   CSV:  `train.csv:12:3: column 'x1': 'abc' is not a number`
///         (line is the physical line, counting from 1; col is the field number, counting from 1)
///   npy:  `train.npy:[12,0]: column '0': value is NaN; the data must be finite`
///         (row and column as NumPy indexes them, from 0)
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace attnpool::cli {

/// Bad input data: a malformed file, a missing column, a non-number, a non-finite value, ...
/// The message carries file, line and column. The tool exits with status 1 on it.
class input_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// The requested columns of a file, as float32 (what attnpool computes in), row-major.
struct numeric_table {
  std::vector<std::string> names;  ///< the requested columns, in the order asked for
  std::size_t rows = 0;            ///< data rows (>= 1)
  std::vector<float> values;       ///< rows x names.size(), row-major
  std::vector<double> exact;       ///< the same before the float32 rounding (for centring)

  [[nodiscard]] std::size_t cols() const noexcept { return names.size(); }
  [[nodiscard]] float at(std::size_t i, std::size_t j) const { return values[i * cols() + j]; }
};

/// Parses CSV text (RFC 4180) and returns the columns `names`, chosen by their header names.
/// `source` names the text in messages (usually the file's path).
///
/// Accepted: a header line, then one record per line; LF or CRLF line ends; fields in double
/// quotes may hold commas, line breaks and doubled quotes (""); spaces and tabs around a field
/// are ignored; blank lines are skipped; a UTF-8 byte-order mark is skipped. Columns not asked
/// for may hold anything. Numbers are parsed as C's strtod does in the "C" locale (decimal point
/// '.', exponents, an optional sign), then rounded to float32.
/// \throws input_error on an empty text, a header without one of `names` (the message lists the
///         available columns), a name that occurs twice in the header, a record with another
///         field count than the header, an unterminated quote, text after a closing quote, a
///         field that is not a number, a NaN or infinity, a number outside float32's range, or
///         no data rows.
numeric_table parse_csv(std::string_view text, std::string_view source,
                        std::span<const std::string> names);

/// Parses the bytes of a NumPy .npy file (format versions 1.0, 2.0 and 3.0) and returns the
/// columns `names`. A 2-D array's columns are named by index: "0", "1", ...; a 1-D array is one
/// column named "0". Accepted dtypes: little-endian float32 ('<f4') and float64 ('<f8'), in C
/// order or Fortran order (what np.save writes for a column-major array such as many
/// DataFrame.to_numpy() results).
/// \throws input_error on a bad magic string or header, another dtype, big-endian data,
///         0-D or 3-D+ shapes, a truncated or over-long data section, a missing
///         column, a NaN or infinity, a float64 outside float32's range, or zero rows.
numeric_table parse_npy(std::span<const unsigned char> bytes, std::string_view source,
                        std::span<const std::string> names);

/// The largest input file read_columns reads, in bytes (2 GiB). The file is held in memory whole
/// while it is parsed, and the values it holds take up to twice its size again; a file this
/// large (about 10^8 numbers as CSV) is far more than a run of O(n m) pooling can use.
inline constexpr std::uint64_t kMaxInputBytes = std::uint64_t{1} << 31;

/// Reads `path` and parses it as .npy when it starts with NumPy's magic string, else as CSV. A
/// file named *.npy without the magic string is an error rather than CSV.
///
/// `path` must be a regular file (its size, from the file system, must be at most `max_bytes`)
/// or a pipe (`<(zcat data.csv.gz)`, /dev/stdin on a pipe; read until its end, at most
/// `max_bytes`). Devices, directories and sockets are refused before anything is read, so that
/// /dev/zero or a tape drive is an error rather than an endless read.
/// \throws input_error naming the file when it cannot be opened or read, is not a regular file
///         or a pipe, is larger than `max_bytes`, or does not fit in memory; or as parse_csv /
///         parse_npy.
numeric_table read_columns(const std::filesystem::path& path, std::span<const std::string> names,
                           std::uint64_t max_bytes = kMaxInputBytes);

}  // namespace attnpool::cli
