// A reader of NumPy's .npy format (numpy/lib/format.py), restricted to what the tool computes
// on: 1-D or 2-D, little-endian float32 or float64, in C or Fortran order.
//
// Layout: the magic "\x93NUMPY", a major and a minor version byte, the header length (2 bytes
// little-endian in version 1, 4 bytes in versions 2 and 3), then the header: a Python dict
// literal such as {'descr': '<f8', 'fortran_order': False, 'shape': (100, 2), }, padded with
// spaces and a '\n'. The data follow, rows * cols items, with nothing after them.
#include "number_text.hpp"
#include "table.hpp"

#include <attnpool/error.hpp>

#include <bit>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace attnpool::cli {
namespace {

constexpr std::string_view kMagic = "\x93NUMPY";

[[noreturn]] void fail(std::string_view source, const std::string& what) {
  throw input_error(detail::concat(source, ": ", what));
}

std::uint64_t read_le(const unsigned char* p, int bytes) noexcept {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// The three entries of the header dict that matter.
struct npy_header {
  std::string descr;
  bool fortran_order = false;
  std::vector<std::uint64_t> shape;
};

// A parser for the small subset of Python literals that NumPy writes into headers: a dict of
// string keys to strings, booleans and tuples of non-negative integers.
class header_parser {
 public:
  header_parser(std::string_view text, std::string_view source) : text_(text), source_(source) {}

  npy_header parse() {
    npy_header h;
    bool have_descr = false, have_order = false, have_shape = false;
    expect('{');
    while (!accept('}')) {
      const std::string key = string_literal();
      expect(':');
      if (key == "descr") {
        h.descr = string_literal();
        have_descr = true;
      } else if (key == "fortran_order") {
        h.fortran_order = boolean();
        have_order = true;
      } else if (key == "shape") {
        h.shape = int_tuple();
        have_shape = true;
      } else {
        bad("unexpected key " + quoted(key, 64));
      }
      if (!accept(',')) {
        expect('}');
        break;
      }
    }
    skip_space();
    if (pos_ != text_.size()) bad("text after the closing '}'");
    if (!have_descr || !have_order || !have_shape) {
      bad("the header must have the keys 'descr', 'fortran_order' and 'shape'");
    }
    return h;
  }

 private:
  [[noreturn]] void bad(const std::string& what) const {
    fail(source_, "bad .npy header: " + what + " in \"" + printable(trimmed(), 200) + "\"");
  }
  [[nodiscard]] std::string_view trimmed() const {
    std::string_view t = text_;
    while (!t.empty() && (t.back() == ' ' || t.back() == '\n')) t.remove_suffix(1);
    return t;
  }
  void skip_space() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\n')) ++pos_;
  }
  bool accept(char c) {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  void expect(char c) {
    if (!accept(c)) bad(std::string("expected '") + c + "'");
  }
  std::string string_literal() {
    skip_space();
    if (pos_ >= text_.size() || (text_[pos_] != '\'' && text_[pos_] != '"')) {
      bad("expected a quoted string");
    }
    const char q = text_[pos_++];
    const std::size_t end = text_.find(q, pos_);
    if (end == std::string_view::npos) bad("unterminated string");
    std::string s(text_.substr(pos_, end - pos_));
    pos_ = end + 1;
    return s;
  }
  bool boolean() {
    skip_space();
    for (const auto& [word, value] :
         {std::pair{std::string_view("True"), true}, std::pair{std::string_view("False"), false}}) {
      if (text_.substr(pos_).starts_with(word)) {
        pos_ += word.size();
        return value;
      }
    }
    bad("expected True or False");
  }
  std::vector<std::uint64_t> int_tuple() {
    std::vector<std::uint64_t> dims;
    expect('(');
    while (!accept(')')) {
      skip_space();
      std::uint64_t v = 0;
      const char* first = text_.data() + pos_;
      const char* last = text_.data() + text_.size();
      const auto [end, ec] = std::from_chars(first, last, v);
      if (ec != std::errc() || end == first) bad("expected a dimension (a non-negative integer)");
      pos_ += static_cast<std::size_t>(end - first);
      dims.push_back(v);
      if (!accept(',')) {
        expect(')');
        break;
      }
    }
    return dims;
  }

  std::string_view text_;
  std::string_view source_;
  std::size_t pos_ = 0;
};

std::string index_names(std::uint64_t cols) {
  constexpr std::uint64_t kShown = 20;
  std::string s;
  for (std::uint64_t j = 0; j < cols && j < kShown; ++j) {
    if (j > 0) s += ", ";
    s += std::to_string(j);
  }
  if (cols > kShown) s += ", ... " + std::to_string(cols - 1);
  return s;
}

}  // namespace

numeric_table parse_npy(std::span<const unsigned char> bytes, std::string_view source,
                        std::span<const std::string> names) {
  if (bytes.empty()) fail(source, "the file is empty; expected a NumPy .npy array");
  if (bytes.size() < kMagic.size() ||
      std::string_view(reinterpret_cast<const char*>(bytes.data()), kMagic.size()) != kMagic) {
    fail(source, "not a NumPy .npy file (it does not start with \"\\x93NUMPY\")");
  }
  if (bytes.size() < kMagic.size() + 2) fail(source, "truncated .npy file: the version is cut off");
  const unsigned major = bytes[6];
  const unsigned minor = bytes[7];
  if (major < 1 || major > 3) {
    fail(source, detail::concat("unsupported .npy format version ", major, '.', minor,
                                " (supported: 1.0, 2.0, 3.0)"));
  }
  const int len_bytes = major == 1 ? 2 : 4;
  const std::size_t prefix = kMagic.size() + 2 + static_cast<std::size_t>(len_bytes);
  if (bytes.size() < prefix) fail(source, "truncated .npy file: the header length is cut off");
  const std::uint64_t header_len = read_le(bytes.data() + 8, len_bytes);
  if (header_len > bytes.size() - prefix) {
    fail(source, detail::concat("truncated .npy file: the header is ", header_len,
                                " bytes long but only ", bytes.size() - prefix, " follow"));
  }
  const std::string_view header_text(reinterpret_cast<const char*>(bytes.data() + prefix),
                                     static_cast<std::size_t>(header_len));
  const npy_header h = header_parser(header_text, source).parse();

  std::size_t item = 0;
  if (h.descr == "<f4") {
    item = 4;
  } else if (h.descr == "<f8") {
    item = 8;
  } else if (h.descr == ">f4" || h.descr == ">f8") {
    fail(source, "big-endian data ('" + h.descr +
                     "') is not supported; save a little-endian copy, e.g. a.astype('<f8')");
  } else {
    fail(source, "dtype " + quoted(h.descr, 64) +
                     " is not supported; expected float32 ('<f4') or float64 ('<f8'), "
                     "e.g. np.save(path, a.astype(np.float64))");
  }
  if (h.shape.empty() || h.shape.size() > 2) {
    fail(source, detail::concat("a ", h.shape.size(),
                                "-D array is not supported; expected 1-D (one column) or 2-D "
                                "(rows x columns)"));
  }
  const std::uint64_t rows = h.shape[0];
  const std::uint64_t cols = h.shape.size() == 2 ? h.shape[1] : 1;

  // Size check before any element is read, with overflow in mind: rows * cols * item must fit.
  const std::uint64_t available = bytes.size() - prefix - header_len;
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  if (cols != 0 && rows > kMax / cols / item) {
    fail(source, detail::concat("the shape (", rows, ", ", cols, ") is too large"));
  }
  const std::uint64_t needed = rows * cols * item;
  if (available < needed) {
    fail(source, detail::concat("truncated .npy file: the header promises ", rows, " x ", cols,
                                " float", item * 8, " values (", needed, " bytes) but ", available,
                                " bytes of data follow"));
  }
  if (available > needed) {
    fail(source, detail::concat("malformed .npy file: ", available - needed, " bytes follow the ",
                                needed, " bytes of data"));
  }

  std::vector<std::uint64_t> picked;
  for (const std::string& name : names) {
    std::uint64_t j = 0;
    const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), j);
    if (name.empty() || ec != std::errc() || end != name.data() + name.size() || j >= cols ||
        (name.size() > 1 && name[0] == '0')) {
      fail(source, detail::concat("no column ", quoted(name, 64), "; the columns of a ", h.shape.size(),
                                  "-D .npy array are named by index: ",
                                  cols == 0 ? std::string("(none)") : index_names(cols)));
    }
    picked.push_back(j);
  }
  if (rows == 0) fail(source, "no data rows (the array's shape has 0 rows)");

  numeric_table out;
  out.names.assign(names.begin(), names.end());
  out.rows = static_cast<std::size_t>(rows);
  out.values.reserve(out.rows * picked.size());
  const unsigned char* data = bytes.data() + prefix + header_len;
  for (std::uint64_t i = 0; i < rows; ++i) {
    for (std::size_t c = 0; c < picked.size(); ++c) {
      // Fortran order stores column after column; pandas' DataFrame.to_numpy() often gives
      // such arrays, and np.save keeps their order.
      const std::uint64_t at = h.fortran_order ? picked[c] * rows + i : i * cols + picked[c];
      const unsigned char* p = data + at * item;
      const double v =
          item == 4
              ? static_cast<double>(std::bit_cast<float>(static_cast<std::uint32_t>(read_le(p, 4))))
              : std::bit_cast<double>(read_le(p, 8));
      const auto f = static_cast<float>(v);
      if (!std::isfinite(f)) {
        // file:[row,col] with NumPy's 0-based indices, in the file:line:col form of the CSV reader.
        throw input_error(detail::concat(source, ":[", i, ',', picked[c], "]: column ",
                                         quoted(names[c], 64), ": ", describe_non_finite(v)));
      }
      out.values.push_back(f);
      out.exact.push_back(v);
    }
  }
  return out;
}

}  // namespace attnpool::cli
