// The CLI's CSV and .npy readers: what they accept, and every rejection with its file:line:col.
#include <number_text.hpp>
#include <table.hpp>

#include <test_support.hpp>

#include <gtest/gtest.h>

#include <bit>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <csignal>
#include <cmath>
#include <cstdlib>
#include <sys/stat.h>
#include <unistd.h>

namespace {

using attnpool::cli::input_error;
using attnpool::cli::numeric_table;
namespace fs = std::filesystem;

numeric_table csv(std::string_view text, std::vector<std::string> names) {
  return attnpool::cli::parse_csv(text, "t.csv", names);
}

// The message parse_csv throws for `text`, or "no error".
std::string csv_error(std::string_view text, std::vector<std::string> names) {
  try {
    (void)csv(text, std::move(names));
  } catch (const input_error& e) {
    return e.what();
  }
  return "no error";
}

// ---- CSV: accepted input ---------------------------------------------------------------------

TEST(cli_csv, PicksColumnsByNameInTheOrderAsked) {
  const numeric_table t = csv("id,x,y\nfirst,1,2\nsecond,3.5,-4e-1\n", {"y", "x"});
  EXPECT_EQ(t.rows, 2u);
  EXPECT_EQ(t.names, (std::vector<std::string>{"y", "x"}));
  EXPECT_EQ(t.values, (std::vector<float>{2, 1, -0.4f, 3.5f}));
}

TEST(cli_csv, QuotedFieldsHoldCommasQuotesAndLineBreaks) {
  // Header names with a comma and a doubled quote; an unused column spanning two lines.
  const std::string text =
      "\"x, in m\",\"say \"\"hi\"\"\",note\n"
      "\"1.5\",2,\"two\nlines\"\n"
      "3,\"4\",plain\n";
  const numeric_table t = csv(text, {"x, in m", "say \"hi\""});
  EXPECT_EQ(t.rows, 2u);
  EXPECT_EQ(t.values, (std::vector<float>{1.5f, 2, 3, 4}));
}

TEST(cli_csv, LineNumbersCountLinesInsideQuotedFields) {
  // The record on lines 2-3 holds a line break; the bad number sits on line 4, field 2.
  EXPECT_EQ(csv_error("id,x\n\"a\nb\",1\nc,zz\n", {"x"}),
            "t.csv:4:2: column 'x': 'zz' is not a number");
}

TEST(cli_csv, CrlfAndLf) {
  const numeric_table crlf = csv("x,y\r\n1,2\r\n3,4\r\n", {"x", "y"});
  const numeric_table lf = csv("x,y\n1,2\n3,4", {"x", "y"});  // no final line break
  EXPECT_EQ(crlf.values, (std::vector<float>{1, 2, 3, 4}));
  EXPECT_EQ(lf.values, crlf.values);
  // A quoted field ending right before CRLF.
  EXPECT_EQ(csv("\"x\"\r\n\"5\"\r\n", {"x"}).values, (std::vector<float>{5}));
}

TEST(cli_csv, BlanksBomAndBlankLines) {
  const numeric_table t = csv("\xEF\xBB\xBFx , y\n\n 1.5 ,\t+2 \n   \n\r\n3e2,-0\n\n", {"x", "y"});
  EXPECT_EQ(t.rows, 2u);
  EXPECT_EQ(t.values, (std::vector<float>{1.5f, 2, 300, -0.0f}));
  // Blank lines still count for line numbers.
  EXPECT_EQ(csv_error("x\n\n\n1\nq\n", {"x"}), "t.csv:5:1: column 'x': 'q' is not a number");
}

TEST(cli_csv, NumbersRoundToFloat32) {
  // 1e-400 underflows even double: it reads as 0, like strtod, rather than as an error.
  const numeric_table t = csv("x\n0.1\n1e-50\n1e-400\n3.4028234e38\n.5\n5.\n", {"x"});
  EXPECT_EQ(t.values, (std::vector<float>{0.1f, 0.0f, 0.0f, 3.4028234e38f, 0.5f, 5.0f}));
}

TEST(cli_csv, HexadecimalFloatsAsStrtodReadsThem) {
  // The docs promise strtod's syntax, which includes C99's hexadecimal floats (printf's %a):
  // random floats written with %a must read back exactly, as strtod reads them.
  const std::uint64_t seed = attnpool::test::fresh_seed();
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<float> mantissa(-1, 1);
  std::uniform_int_distribution<int> exponent(-140, 127);
  std::string text = "x\n";
  std::vector<float> want;
  for (int i = 0; i < 200; ++i) {
    const float v = std::ldexp(mantissa(rng), exponent(rng));
    char buf[64];
    std::snprintf(buf, sizeof buf, i % 2 ? "%a\n" : "%A\n", static_cast<double>(v));
    text += buf;
    want.push_back(static_cast<float>(std::strtod(buf, nullptr)));
    EXPECT_EQ(want.back(), v) << buf << " (seed " << seed << ")";
  }
  EXPECT_EQ(csv(text, {"x"}).values, want) << "seed " << seed;
  for (const char* t : {"0x10", "+0X1.8p1", "-0x.8", "0x1p-200", "0x1.fffffep127", "0x1P+3"}) {
    EXPECT_EQ(csv(std::string("x\n") + t + "\n", {"x"}).values,
              (std::vector<float>{static_cast<float>(std::strtod(t, nullptr))}))
        << t;
  }
  // strtod reads "0x1" of "0x1p+-3" and stops: the whole field is not a number.
  EXPECT_EQ(csv_error("x\n0X1P+-149\n", {"x"}),
            "t.csv:2:1: column 'x': '0X1P+-149' is not a number");
  EXPECT_EQ(csv_error("x\n0x1p+-3\n", {"x"}), "t.csv:2:1: column 'x': '0x1p+-3' is not a number");
  EXPECT_EQ(csv_error("x\n0x1p128\n", {"x"}),
            "t.csv:2:1: column 'x': '0x1p128' is outside float32's range (magnitude above "
            "3.40282347e+38)");
  EXPECT_EQ(csv_error("x\n-0x1p5000\n", {"x"}),
            "t.csv:2:1: column 'x': '-0x1p5000' is outside float32's range (magnitude above "
            "3.40282347e+38)");
}

// ---- CSV: every rejection, with file:line:col -----------------------------------------------

TEST(cli_csv, EmptyFile) {
  EXPECT_EQ(csv_error("", {"x"}),
            "t.csv:1:1: the file is empty; expected a header line with column names");
  EXPECT_EQ(csv_error("\n\n", {"x"}),
            "t.csv:3:1: the file is empty; expected a header line with column names");
}

TEST(cli_csv, MissingColumnListsTheAvailableOnes) {
  EXPECT_EQ(csv_error("id,x1,x2,y\n1,2,3,4\n", {"x1", "x3"}),
            "t.csv:1:1: no column 'x3'; the columns are: id, x1, x2, y");
  EXPECT_EQ(csv_error("\n,x\n1,2\n", {"X"}),
            "t.csv:2:1: no column 'X'; the columns are: (empty), x");
}

TEST(cli_csv, HeaderNamesAreEscapedAndCappedInMessages) {
  // A crafted header must not reach the terminal as escape sequences, line breaks, a NUL that
  // cuts the message short, or a megabyte of text.
  const std::string nul_name("a\0b", 3);
  const std::string header = "\x1b]0;pwned\x07,\"two\nlines\"," + nul_name +
                             ",\xc2\x9b" "31m,\xff\xfe,caf\xc3\xa9," + std::string(1 << 20, 'L');
  const std::string m = csv_error(header + "\n1,2,3,4,5,6,7\n", {"q"});
  EXPECT_EQ(m.rfind("t.csv:1:1: no column 'q'; the columns are: \\x1b]0;pwned\\x07, "
                    "two\\x0alines, a\\x00b, \\xc2\\x9b31m, \\xff\\xfe, caf\xc3\xa9, LLLL",
                    0),
            0u)
      << m.substr(0, 300);
  EXPECT_LT(m.size(), 400u);
  for (const char c : m) {
    EXPECT_FALSE(static_cast<unsigned char>(c) < 0x20 || c == 0x7f) << "control byte in: " << m;
  }
  // Many columns: the list stops after 20.
  std::string wide;
  for (int j = 0; j < 5000; ++j) wide += (j ? ",c" : "c") + std::to_string(j);
  const std::string w = csv_error(wide + "\n", {"q"});
  EXPECT_NE(w.find("c19, ... (5000 columns)"), std::string::npos) << w.substr(0, 300);
  EXPECT_LT(w.size(), 400u);
  // The requested name is the user's, but escaped as well.
  EXPECT_EQ(csv_error("x\n1\n", {"\x1b[2J"}), "t.csv:1:1: no column '\\x1b[2J'; the columns are: x");
}

TEST(cli_csv, DuplicateHeaderNameIsAmbiguous) {
  EXPECT_EQ(csv_error("x,y,x\n1,2,3\n", {"x"}),
            "t.csv:1:3: column 'x' appears twice in the header (fields 1 and 3)");
  // A duplicate that is not asked for is harmless.
  EXPECT_EQ(csv("x,y,x\n1,2,3\n", {"y"}).values, (std::vector<float>{2}));
}

TEST(cli_csv, NotANumber) {
  EXPECT_EQ(csv_error("x1,x2\n1,2\n3,abc\n", {"x1", "x2"}),
            "t.csv:3:2: column 'x2': 'abc' is not a number");
  EXPECT_EQ(csv_error("x\n1.5.2\n", {"x"}), "t.csv:2:1: column 'x': '1.5.2' is not a number");
  EXPECT_EQ(csv_error("x\n0x\n", {"x"}), "t.csv:2:1: column 'x': '0x' is not a number");
  EXPECT_EQ(csv_error("x\n0x1g\n", {"x"}), "t.csv:2:1: column 'x': '0x1g' is not a number");
  EXPECT_EQ(csv_error("x\n-0x-1\n", {"x"}), "t.csv:2:1: column 'x': '-0x-1' is not a number");
  EXPECT_EQ(csv_error("x\n+-1\n", {"x"}), "t.csv:2:1: column 'x': '+-1' is not a number");
  EXPECT_EQ(csv_error("x\n\"1 2\"\n", {"x"}), "t.csv:2:1: column 'x': '1 2' is not a number");
  EXPECT_EQ(csv_error("x\n\"a\tb\"\n", {"x"}), "t.csv:2:1: column 'x': 'a\\x09b' is not a number");
  const std::string long_field(100, '7');
  EXPECT_EQ(csv_error("x\n" + long_field + "z\n", {"x"}),
            "t.csv:2:1: column 'x': '" + std::string(40, '7') + "...' is not a number");
}

TEST(cli_csv, EmptyField) {
  EXPECT_EQ(csv_error("x,y\n,2\n", {"x", "y"}),
            "t.csv:2:1: column 'x': empty field; expected a number");
  EXPECT_EQ(csv_error("x,y\n1,\n", {"x", "y"}),
            "t.csv:2:2: column 'y': empty field; expected a number");
}

TEST(cli_csv, NanAndInfinityAreRejected) {
  EXPECT_EQ(csv_error("x,y\n1,nan\n", {"x", "y"}),
            "t.csv:2:2: column 'y': 'nan' is not finite; the data must be finite");
  EXPECT_EQ(csv_error("x,y\n1,2\n-inf,2\n", {"x", "y"}),
            "t.csv:3:1: column 'x': '-inf' is not finite; the data must be finite");
  EXPECT_EQ(csv_error("x\nInfinity\n", {"x"}),
            "t.csv:2:1: column 'x': 'Infinity' is not finite; the data must be finite");
}

TEST(cli_csv, OutsideFloat32Range) {
  EXPECT_EQ(csv_error("x\n1e39\n", {"x"}),
            "t.csv:2:1: column 'x': '1e39' is outside float32's range (magnitude above "
            "3.40282347e+38)");
  EXPECT_EQ(csv_error("x\n-1e400\n", {"x"}),
            "t.csv:2:1: column 'x': '-1e400' is outside float32's range (magnitude above "
            "3.40282347e+38)");
}

TEST(cli_csv, WrongFieldCount) {
  EXPECT_EQ(csv_error("x,y\n1,2\n3,4,5\n", {"x"}),
            "t.csv:3:3: expected 2 fields as in the header, found 3");
  EXPECT_EQ(csv_error("x,y\n1,2\n3\n", {"x"}),
            "t.csv:3:2: expected 2 fields as in the header, found 1");
  EXPECT_EQ(csv_error("x,y\r\n1,2,\r\n", {"x"}),
            "t.csv:2:3: expected 2 fields as in the header, found 3");
}

TEST(cli_csv, NoDataRows) {
  EXPECT_EQ(csv_error("x,y\n", {"x"}), "t.csv:1:1: no data rows after the header");
  EXPECT_EQ(csv_error("x,y\r\n\r\n\r\n", {"x"}), "t.csv:1:1: no data rows after the header");
}

TEST(cli_csv, MalformedQuoting) {
  EXPECT_EQ(csv_error("x,y\n1,\"2\n", {"x"}),
            "t.csv:2:2: unterminated quoted field (no closing '\"')");
  EXPECT_EQ(csv_error("x,y\n1,\"2\"3\n", {"x"}),
            "t.csv:2:2: unexpected text after the closing quote of a quoted field");
  EXPECT_EQ(csv_error("x,y\n1,2\"3\n", {"x"}),
            "t.csv:2:2: quote inside an unquoted field (quote the whole field)");
  EXPECT_EQ(csv_error("x,y\n1\r2,3\n", {"x"}),
            "t.csv:2:1: carriage return not followed by a line feed");
}

// ---- npy ------------------------------------------------------------------------------------

// An .npy file's bytes: magic, version, header padded to a multiple of 64, then `payload`.
std::vector<unsigned char> npy_bytes(const std::string& dict,
                                     const std::vector<unsigned char>& payload, int major = 1) {
  const std::size_t prefix = major == 1 ? 10 : 12;
  std::string header = dict;
  while ((prefix + header.size() + 1) % 64 != 0) header += ' ';
  header += '\n';
  std::vector<unsigned char> out = {
      0x93, 'N', 'U', 'M', 'P', 'Y', static_cast<unsigned char>(major), 0};
  const std::size_t len = header.size();
  for (std::size_t i = 0; i < prefix - 8; ++i)
    out.push_back(static_cast<unsigned char>(len >> (8 * i)));
  out.insert(out.end(), header.begin(), header.end());
  out.insert(out.end(), payload.begin(), payload.end());
  return out;
}

template <class T>
std::vector<unsigned char> le_bytes(const std::vector<T>& values) {
  using U = std::conditional_t<sizeof(T) == 4, std::uint32_t, std::uint64_t>;
  std::vector<unsigned char> out;
  for (const T v : values) {
    const U bits = std::bit_cast<U>(v);
    for (std::size_t i = 0; i < sizeof(T); ++i)
      out.push_back(static_cast<unsigned char>(bits >> (8 * i)));
  }
  return out;
}

std::string dict(const std::string& descr, const std::string& shape, bool fortran = false) {
  return "{'descr': '" + descr + "', 'fortran_order': " + (fortran ? "True" : "False") +
         ", 'shape': " + shape + ", }";
}

numeric_table npy(const std::vector<unsigned char>& bytes, std::vector<std::string> names) {
  return attnpool::cli::parse_npy(bytes, "t.npy", names);
}

std::string npy_error(const std::vector<unsigned char>& bytes, std::vector<std::string> names) {
  try {
    (void)npy(bytes, std::move(names));
  } catch (const input_error& e) {
    return e.what();
  }
  return "no error";
}

TEST(cli_npy, HeaderTextIsEscapedInMessages) {
  const std::string m = npy_error(npy_bytes("{'descr': '\x1b[31m<i8', 'fortran_order': False, "
                                            "'shape': (1,), }",
                                            {}),
                                  {"0"});
  EXPECT_EQ(m.rfind("t.npy: dtype '\\x1b[31m<i8' is not supported", 0), 0u) << m;
  const std::string k = npy_error(npy_bytes("{'\x1b\n" + std::string(5000, 'k') + "': 1}", {}), {"0"});
  EXPECT_EQ(k.rfind("t.npy: bad .npy header: unexpected key '\\x1b\\x0akkk", 0), 0u) << k;
  EXPECT_LT(k.size(), 400u);
}

TEST(cli_npy, Float32TwoDimensional) {
  const auto b = npy_bytes(dict("<f4", "(3, 2)"), le_bytes<float>({1, 2, 3, 4, 5, 6}));
  const numeric_table t = npy(b, {"1", "0"});
  EXPECT_EQ(t.rows, 3u);
  EXPECT_EQ(t.values, (std::vector<float>{2, 1, 4, 3, 6, 5}));
}

TEST(cli_npy, FortranOrderIsReadColumnByColumn) {
  // np.save(np.asfortranarray([[1, 2], [3, 4], [5, 6]])) stores 1, 3, 5, 2, 4, 6.
  const auto b = npy_bytes(dict("<f8", "(3, 2)", true), le_bytes<double>({1, 3, 5, 2, 4, 6}));
  EXPECT_EQ(npy(b, {"0", "1"}).values, (std::vector<float>{1, 2, 3, 4, 5, 6}));
}

TEST(cli_npy, Float64OneDimensionalAndVersion2) {
  const auto payload = le_bytes<double>({0.1, -2.5, 1e-50});
  for (const int major : {1, 2, 3}) {
    const auto b = npy_bytes(dict("<f8", "(3,)"), payload, major);
    const numeric_table t = npy(b, {"0"});
    EXPECT_EQ(t.values, (std::vector<float>{0.1f, -2.5f, 0.0f})) << "version " << major;
  }
  // NumPy's own spelling, keys in another order and double quotes, is accepted too.
  const auto b = npy_bytes("{\"shape\": (1, 1), \"fortran_order\": False, \"descr\": \"<f8\"}",
                           le_bytes<double>({7}));
  EXPECT_EQ(npy(b, {"0"}).values, (std::vector<float>{7}));
}

TEST(cli_npy, Truncated) {
  auto payload = le_bytes<double>({1, 2, 3, 4, 5, 6});
  payload.resize(40);
  EXPECT_EQ(npy_error(npy_bytes(dict("<f8", "(3, 2)"), payload), {"0"}),
            "t.npy: truncated .npy file: the header promises 3 x 2 float64 values (48 bytes) but "
            "40 bytes of data follow");
  auto cut_header = npy_bytes(dict("<f8", "(3, 2)"), {});
  cut_header.resize(30);
  EXPECT_EQ(npy_error(cut_header, {"0"}),
            "t.npy: truncated .npy file: the header is 118 bytes long but only 20 follow");
  EXPECT_EQ(npy_error({0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 10}, {"0"}),
            "t.npy: truncated .npy file: the header length is cut off");
  auto extra = le_bytes<float>({1, 2});
  EXPECT_EQ(npy_error(npy_bytes(dict("<f4", "(1,)"), extra), {"0"}),
            "t.npy: malformed .npy file: 4 bytes follow the 4 bytes of data");
}

TEST(cli_npy, NotAnNpyFile) {
  EXPECT_EQ(npy_error({}, {"0"}), "t.npy: the file is empty; expected a NumPy .npy array");
  EXPECT_EQ(npy_error({'x', ',', 'y', '\n', '1', ',', '2', '\n'}, {"0"}),
            "t.npy: not a NumPy .npy file (it does not start with \"\\x93NUMPY\")");
  auto v9 = npy_bytes(dict("<f4", "(1,)"), le_bytes<float>({1}));
  v9[6] = 9;
  EXPECT_EQ(npy_error(v9, {"0"}),
            "t.npy: unsupported .npy format version 9.0 (supported: 1.0, 2.0, 3.0)");
}

TEST(cli_npy, UnsupportedArrays) {
  const auto one = le_bytes<double>({1});
  EXPECT_EQ(npy_error(npy_bytes(dict("<i8", "(1,)"), one), {"0"}),
            "t.npy: dtype '<i8' is not supported; expected float32 ('<f4') or float64 ('<f8'), "
            "e.g. np.save(path, a.astype(np.float64))");
  EXPECT_EQ(npy_error(npy_bytes(dict(">f8", "(1,)"), one), {"0"}),
            "t.npy: big-endian data ('>f8') is not supported; save a little-endian copy, e.g. "
            "a.astype('<f8')");
  EXPECT_EQ(npy_error(npy_bytes(dict("<f8", "(1, 1, 1)"), one), {"0"}),
            "t.npy: a 3-D array is not supported; expected 1-D (one column) or 2-D (rows x "
            "columns)");
  EXPECT_EQ(npy_error(npy_bytes(dict("<f8", "()"), one), {"0"}),
            "t.npy: a 0-D array is not supported; expected 1-D (one column) or 2-D (rows x "
            "columns)");
  const std::string bad = npy_error(npy_bytes("{'descr': '<f8', 'shape': (1,)}", one), {"0"});
  EXPECT_EQ(bad.rfind("t.npy: bad .npy header: the header must have the keys", 0), 0u) << bad;
}

TEST(cli_npy, ColumnsAreNamedByIndex) {
  const auto b = npy_bytes(dict("<f4", "(1, 2)"), le_bytes<float>({1, 2}));
  EXPECT_EQ(npy_error(b, {"2"}),
            "t.npy: no column '2'; the columns of a 2-D .npy array are named by index: 0, 1");
  EXPECT_EQ(npy_error(b, {"x"}),
            "t.npy: no column 'x'; the columns of a 2-D .npy array are named by index: 0, 1");
  EXPECT_EQ(npy_error(b, {"01"}),
            "t.npy: no column '01'; the columns of a 2-D .npy array are named by index: 0, 1");
  const auto wide = npy_bytes(dict("<f4", "(0, 30)"), {});
  EXPECT_EQ(npy_error(wide, {"x"}),
            "t.npy: no column 'x'; the columns of a 2-D .npy array are named by index: 0, 1, 2, "
            "3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, ... 29");
}

TEST(cli_npy, NoRows) {
  EXPECT_EQ(npy_error(npy_bytes(dict("<f8", "(0, 2)"), {}), {"1"}),
            "t.npy: no data rows (the array's shape has 0 rows)");
}

TEST(cli_npy, NonFiniteAndOutOfRangeValues) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(
      npy_error(npy_bytes(dict("<f8", "(2, 2)"), le_bytes<double>({1, 2, nan, 4})), {"1", "0"}),
      "t.npy:[1,0]: column '0': value is NaN; the data must be finite");
  EXPECT_EQ(
      npy_error(npy_bytes(dict("<f4", "(2,)"), le_bytes<float>({1, -static_cast<float>(inf)})),
                {"0"}),
      "t.npy:[1,0]: column '0': value is -inf; the data must be finite");
  EXPECT_EQ(npy_error(npy_bytes(dict("<f8", "(1,)"), le_bytes<double>({1e39})), {"0"}),
            "t.npy:[0,0]: column '0': value is outside float32's range (magnitude above "
            "3.40282347e+38)");
  // A NaN in a column not asked for is never read.
  EXPECT_EQ(npy(npy_bytes(dict("<f8", "(1, 2)"), le_bytes<double>({nan, 3})), {"1"}).values,
            (std::vector<float>{3}));
}

// ---- read_columns: the file system and the choice of reader --------------------------------

class cli_read_columns : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("attnpool-cli-readers-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path write(const std::string& name, const std::string& bytes) {
    std::ofstream(dir_ / name, std::ios::binary) << bytes;
    return dir_ / name;
  }
  fs::path dir_;
};

TEST_F(cli_read_columns, ChoosesTheReaderByContent) {
  const auto b = npy_bytes(dict("<f4", "(2,)"), le_bytes<float>({1, 2}));
  // An .npy under another name is still read as .npy; a CSV named *.txt as CSV.
  const fs::path npy_path = write("data.bin", std::string(b.begin(), b.end()));
  const std::vector<std::string> zero = {"0"}, x = {"x"};
  EXPECT_EQ(attnpool::cli::read_columns(npy_path, zero).values, (std::vector<float>{1, 2}));
  EXPECT_EQ(attnpool::cli::read_columns(write("data.txt", "x\n3\n"), x).values,
            (std::vector<float>{3}));
}

TEST_F(cli_read_columns, ErrorsNameTheFile) {
  const std::vector<std::string> x = {"x"};
  const fs::path fake = write("data.npy", "x\n1\n");
  try {
    (void)attnpool::cli::read_columns(fake, x);
    FAIL() << "no error";
  } catch (const input_error& e) {
    EXPECT_EQ(std::string(e.what()),
              fake.string() + ": not a NumPy .npy file (it does not start with \"\\x93NUMPY\")");
  }
  try {
    (void)attnpool::cli::read_columns(dir_ / "missing.csv", x);
    FAIL() << "no error";
  } catch (const input_error& e) {
    EXPECT_EQ(std::string(e.what()),
              (dir_ / "missing.csv").string() + ": cannot open: No such file or directory");
  }
  try {
    (void)attnpool::cli::read_columns(dir_, x);
    FAIL() << "no error";
  } catch (const input_error& e) {
    EXPECT_EQ(std::string(e.what()), dir_.string() +
                                         ": cannot read: it is a directory; expected a regular "
                                         "file (or a pipe)");
  }
}

TEST_F(cli_read_columns, DevicesAreRefusedBeforeReading) {
  // /dev/zero never ends: it must be refused, not read until memory runs out.
  const std::vector<std::string> x = {"x"};
  for (const char* dev : {"/dev/zero", "/dev/null", "/dev/urandom"}) {
    try {
      (void)attnpool::cli::read_columns(dev, x);
      FAIL() << dev << ": no error";
    } catch (const input_error& e) {
      EXPECT_EQ(std::string(e.what()), std::string(dev) +
                                           ": cannot read: it is a character device; expected a "
                                           "regular file (or a pipe)");
    }
  }
}

TEST_F(cli_read_columns, SizeLimit) {
  const std::vector<std::string> x = {"x"};
  // A regular file is sized from the file system: a sparse file one byte over the limit is
  // refused at once, without reading (or allocating) 2 GiB.
  const fs::path big = write("big.csv", "x\n1\n");
  fs::resize_file(big, attnpool::cli::kMaxInputBytes + 1);
  try {
    (void)attnpool::cli::read_columns(big, x);
    FAIL() << "no error";
  } catch (const input_error& e) {
    EXPECT_EQ(std::string(e.what()),
              big.string() + ": the file is larger than the limit of 2147483648 bytes on an input "
                             "file; split it or use fewer rows");
  }
  // At the limit it is read; one byte over, refused (a smaller limit, for speed).
  const fs::path at = write("at.csv", "x\n1\n");
  EXPECT_EQ(attnpool::cli::read_columns(at, x, 4).values, (std::vector<float>{1}));
  EXPECT_THROW((void)attnpool::cli::read_columns(at, x, 3), input_error);
}

TEST_F(cli_read_columns, PipesAreReadToTheirEndWithinTheLimit) {
  const std::vector<std::string> x = {"x"};
  std::signal(SIGPIPE, SIG_IGN);  // the writer below outlives a reader that stops at the limit
  const auto through_fifo = [&](const std::string& text, std::uint64_t max_bytes) {
    const fs::path fifo = dir_ / "pipe";
    fs::remove(fifo);
    EXPECT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
    std::thread writer([&] {
      // The reader stops early at the limit; SIGPIPE is ignored for the test (main below), so
      // the writer only sees EPIPE.
      std::FILE* f = std::fopen(fifo.c_str(), "wb");
      if (f != nullptr) {
        std::fwrite(text.data(), 1, text.size(), f);
        std::fclose(f);
      }
    });
    std::string message = "no error";
    try {
      (void)attnpool::cli::read_columns(fifo, x, max_bytes);
    } catch (const input_error& e) {
      message = e.what();
    }
    writer.join();
    return message;
  };
  std::string text = "x\n";
  for (int i = 0; i < 100000; ++i) text += "1.5\n";
  EXPECT_EQ(through_fifo(text, text.size()), "no error");
  EXPECT_EQ(through_fifo(text, 1000),
            (dir_ / "pipe").string() +
                ": the file is larger than the limit of 1000 bytes on an input file; split it "
                "or use fewer rows");
}

}  // namespace
