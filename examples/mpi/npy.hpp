// Just enough of NumPy's .npy format for the example: read rows [r0, r1) of a 1-D or 2-D
// little-endian float32 / float64 array in C order (a rank reads only its own rows), and write a
// 2-D float32 array.
#pragma once

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <regex>
#include <stdexcept>
#include <string>
#include <vector>

namespace npy {

struct shape {
  std::size_t rows = 0, cols = 0;
};

struct reader {
  std::ifstream in;
  shape dims;
  std::size_t item = 4;  // 4: float32, 8: float64
  std::streamoff data = 0;

  explicit reader(const std::string& path) : in(path, std::ios::binary) {
    if (!in) throw std::runtime_error(path + ": cannot open");
    char magic[8];
    in.read(magic, 8);
    if (!in || std::string(magic, 6) != "\x93NUMPY")
      throw std::runtime_error(path + ": not a .npy file");
    std::uint32_t len = 0;
    unsigned char b[4] = {};
    in.read(reinterpret_cast<char*>(b), magic[6] == 1 ? 2 : 4);
    len = b[0] | b[1] << 8 | (magic[6] == 1 ? 0u : (b[2] << 16 | std::uint32_t{b[3]} << 24));
    std::string header(len, '\0');
    in.read(header.data(), len);
    data = in.tellg();
    std::smatch mt;
    if (!std::regex_search(header, mt, std::regex("'descr': *'<f([48])'")))
      throw std::runtime_error(path + ": dtype must be little-endian float32 or float64");
    item = mt[1] == "8" ? 8 : 4;
    if (header.find("'fortran_order': True") != std::string::npos)
      throw std::runtime_error(path + ": Fortran order is not supported");
    if (!std::regex_search(header, mt, std::regex("'shape': *\\((\\d+),? *(\\d*)\\)")))
      throw std::runtime_error(path + ": shape must be 1-D or 2-D");
    dims.rows = std::stoull(mt[1]);
    dims.cols = mt[2].length() > 0 ? std::stoull(mt[2]) : 1;
  }

  // Rows [r0, r1) as float32, row-major.
  std::vector<float> rows(std::size_t r0, std::size_t r1) {
    std::vector<float> out((r1 - r0) * dims.cols);
    in.seekg(data + static_cast<std::streamoff>(r0 * dims.cols * item));
    if (item == 4) {
      in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size() * 4));
    } else {
      std::vector<double> tmp(out.size());
      in.read(reinterpret_cast<char*>(tmp.data()), static_cast<std::streamsize>(tmp.size() * 8));
      for (std::size_t i = 0; i < tmp.size(); ++i) out[i] = static_cast<float>(tmp[i]);
    }
    if (!in) throw std::runtime_error("short read");
    return out;
  }
};

inline void write(const std::string& path, const std::vector<float>& a, shape s) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(s.rows) + ", " + std::to_string(s.cols) + "), }";
  header.append(64 - (10 + header.size() + 1) % 64, ' ').push_back('\n');
  std::ofstream out(path, std::ios::binary);
  const unsigned char len[2] = {static_cast<unsigned char>(header.size() & 0xff),
                                static_cast<unsigned char>(header.size() >> 8)};
  out.write("\x93NUMPY\x01\x00", 8);
  out.write(reinterpret_cast<const char*>(len), 2);
  out << header;
  out.write(reinterpret_cast<const char*>(a.data()), static_cast<std::streamsize>(a.size() * 4));
  if (!out) throw std::runtime_error(path + ": cannot write");
}

}  // namespace npy
