// A strict RFC 4180 reader of our own, for the columns the tool asks for.
//
// Why not a library: we take a well-kept Debian package where one fits. The candidate,
// libcsv (Debian libcsv-dev 3.0.3), parses through callbacks that receive a field's bytes but
// neither its line nor its field position, and its strict mode reports only "parse error" with
// a byte offset into the current chunk. Every message of ours must say file:line:col, so we
// would have to re-scan the text to locate errors anyway; this scanner is that re-scan, and it
// is the whole parser.
#include "number_text.hpp"
#include "table.hpp"

#include <attnpool/error.hpp>

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace attnpool::cli {
namespace {

// One field of the record being scanned. `text` views the source unless the field was quoted
// and held doubled quotes, in which case it views `unescaped`.
struct field {
  std::size_t begin = 0;  // first byte of the field's content (after an opening quote)
  std::size_t end = 0;    // one past its last byte (before a closing quote)
  std::size_t line = 0;   // the line the field starts on
  bool quoted = false;
  bool has_doubled_quotes = false;
};

class csv_scanner {
 public:
  csv_scanner(std::string_view text, std::string_view source) : text_(text), source_(source) {
    // Excel and Notepad write a UTF-8 byte-order mark; it is not part of the first name.
    if (text_.starts_with("\xEF\xBB\xBF")) pos_ = 3;
  }

  // Reads the next non-blank record into `out`. Returns false at the end of the text.
  bool next_record(std::vector<field>& out) {
    out.clear();
    skip_blank_lines();
    if (pos_ >= text_.size()) return false;
    record_line_ = line_;
    for (;;) {
      field f = scan_field(out.size() + 1);
      out.push_back(f);
      if (pos_ >= text_.size()) return true;
      const char c = text_[pos_];
      if (c == ',') {
        ++pos_;
        continue;
      }
      // scan_field stops only at ',', a line end or the end of the text.
      pos_ += (c == '\r') ? 2 : 1;
      ++line_;
      return true;
    }
  }

  // The text of `f`, with doubled quotes undone (into `scratch` where needed).
  [[nodiscard]] std::string_view text_of(const field& f, std::string& scratch) const {
    const std::string_view raw = text_.substr(f.begin, f.end - f.begin);
    if (!f.has_doubled_quotes) return raw;
    scratch.clear();
    for (std::size_t i = 0; i < raw.size(); ++i) {
      scratch.push_back(raw[i]);
      if (raw[i] == '"') ++i;  // the second quote of a pair
    }
    return scratch;
  }

  [[nodiscard]] std::size_t record_line() const noexcept { return record_line_; }
  [[nodiscard]] std::size_t line() const noexcept { return line_; }

  [[noreturn]] void fail(std::size_t line, std::size_t col, const std::string& what) const {
    throw input_error(detail::concat(source_, ':', line, ':', col, ": ", what));
  }

 private:
  static bool is_blank(char c) noexcept { return c == ' ' || c == '\t'; }

  // Skips lines that hold nothing but spaces and tabs (pandas' skip_blank_lines).
  void skip_blank_lines() {
    for (;;) {
      std::size_t p = pos_;
      while (p < text_.size() && is_blank(text_[p])) ++p;
      if (p < text_.size() && text_[p] == '\n') {
        pos_ = p + 1;
      } else if (p + 1 < text_.size() && text_[p] == '\r' && text_[p + 1] == '\n') {
        pos_ = p + 2;
      } else {
        if (p >= text_.size()) pos_ = p;
        return;
      }
      ++line_;
    }
  }

  field scan_field(std::size_t col) {
    while (pos_ < text_.size() && is_blank(text_[pos_])) ++pos_;
    field f;
    f.line = line_;
    if (pos_ < text_.size() && text_[pos_] == '"') {
      f.quoted = true;
      f.begin = ++pos_;
      for (;;) {
        if (pos_ >= text_.size()) fail(f.line, col, "unterminated quoted field (no closing '\"')");
        const char c = text_[pos_];
        if (c == '"') {
          if (pos_ + 1 < text_.size() && text_[pos_ + 1] == '"') {
            f.has_doubled_quotes = true;
            pos_ += 2;
            continue;
          }
          break;
        }
        if (c == '\n') ++line_;  // a line break inside quotes belongs to the field
        ++pos_;
      }
      f.end = pos_++;
      while (pos_ < text_.size() && is_blank(text_[pos_])) ++pos_;
      if (pos_ < text_.size() && !at_delimiter()) {
        fail(line_, col, "unexpected text after the closing quote of a quoted field");
      }
      return f;
    }
    f.begin = pos_;
    while (pos_ < text_.size()) {
      const char c = text_[pos_];
      if (c == ',' || c == '\n') break;
      if (c == '\r') {
        if (pos_ + 1 < text_.size() && text_[pos_ + 1] == '\n') break;
        fail(line_, col, "carriage return not followed by a line feed");
      }
      if (c == '"') fail(line_, col, "quote inside an unquoted field (quote the whole field)");
      ++pos_;
    }
    f.end = pos_;
    while (f.end > f.begin && is_blank(text_[f.end - 1])) --f.end;
    return f;
  }

  [[nodiscard]] bool at_delimiter() const noexcept {
    const char c = text_[pos_];
    return c == ',' || c == '\n' ||
           (c == '\r' && pos_ + 1 < text_.size() && text_[pos_ + 1] == '\n');
  }

  std::string_view text_;
  std::string_view source_;
  std::size_t pos_ = 0;
  std::size_t line_ = 1;
  std::size_t record_line_ = 1;
};

// Header names come from the file: each is escaped and cut short, and the list stops after
// kShown names, so that a crafted header can neither drive the terminal nor flood it.
std::string join(const std::vector<std::string>& names) {
  constexpr std::size_t kShown = 20, kNameBytes = 64;
  std::string s;
  for (std::size_t j = 0; j < names.size() && j < kShown; ++j) {
    if (j > 0) s += ", ";
    s += names[j].empty() ? std::string("(empty)") : printable(names[j], kNameBytes);
  }
  if (names.size() > kShown) s += detail::concat(", ... (", names.size(), " columns)");
  return s;
}

}  // namespace

numeric_table parse_csv(std::string_view text, std::string_view source,
                        std::span<const std::string> names) {
  csv_scanner scan(text, source);
  std::vector<field> record;
  std::string scratch;
  if (!scan.next_record(record)) {
    scan.fail(scan.line(), 1, "the file is empty; expected a header line with column names");
  }

  // The header: names as written (quoted names exactly, unquoted ones without outer blanks).
  const std::size_t header_line = scan.record_line();
  std::vector<std::string> header;
  header.reserve(record.size());
  for (const field& f : record) header.emplace_back(scan.text_of(f, scratch));
  std::vector<std::size_t> picked;  // field index of each requested name
  for (const std::string& name : names) {
    std::size_t found = header.size();
    for (std::size_t j = 0; j < header.size(); ++j) {
      if (header[j] != name) continue;
      if (found != header.size()) {
        scan.fail(header_line, j + 1,
                  detail::concat("column ", quoted(name, 64), " appears twice in the header (fields ",
                                 found + 1, " and ", j + 1, ")"));
      }
      found = j;
    }
    if (found == header.size()) {
      scan.fail(header_line, 1,
                detail::concat("no column ", quoted(name, 64), "; the columns are: ", join(header)));
    }
    picked.push_back(found);
  }

  numeric_table out;
  out.names.assign(names.begin(), names.end());
  while (scan.next_record(record)) {
    if (record.size() != header.size()) {
      const std::size_t col = std::min(record.size(), header.size()) + 1;
      scan.fail(scan.record_line(), col,
                detail::concat("expected ", header.size(), " fields as in the header, found ",
                               record.size()));
    }
    for (std::size_t c = 0; c < picked.size(); ++c) {
      const field& f = record[picked[c]];
      const std::string_view t = scan.text_of(f, scratch);
      const number_parse r = parse_float32(t);
      if (!r.ok()) {
        scan.fail(f.line, picked[c] + 1,
                  detail::concat("column ", quoted(names[c], 64), ": ", describe(r, t)));
      }
      out.values.push_back(r.value);
      out.exact.push_back(r.exact);
    }
    ++out.rows;
  }
  if (out.rows == 0) {
    scan.fail(header_line, 1, "no data rows after the header");
  }
  return out;
}

}  // namespace attnpool::cli
