// attnpool-cpp-results: runs one C++ API call on inputs the Python tests wrote, and writes its
// outputs, so that the tests can require the Python package's results to be bitwise the C++
// library's. Not a user tool.
//
//   attnpool-cpp-results DIR
//
// DIR/args.txt holds one item a line: "call NAME", "f32 NAME ROWS COLS", "f64 NAME LEN",
// "u64 NAME LEN" (raw little-endian data in DIR/NAME.bin), "num NAME VALUE", "str NAME VALUE".
// Outputs go to DIR/NAME.bin (raw) and DIR/results.txt ("NAME VALUE" lines, %.17g).
// An attnpool::error is written to DIR/error.txt, and the exit status is 3.
#include <attnpool/batched.hpp>
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/pool.hpp>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

struct f32_array {
  std::size_t rows = 0, cols = 0;
  std::vector<float> data;
  attnpool::const_view view() const { return {data.data(), rows, cols}; }
};

struct inputs {
  std::string dir, call;
  std::map<std::string, f32_array> f32;
  std::map<std::string, std::vector<double>> f64;
  std::map<std::string, std::vector<std::size_t>> u64;
  std::map<std::string, double> num;
  std::map<std::string, std::string> str;

  bool has(const std::string& k) const { return f32.count(k) || f64.count(k) || u64.count(k); }
  const f32_array& a(const std::string& k) const { return f32.at(k); }
  double n(const std::string& k, double dflt) const {
    auto it = num.find(k);
    return it == num.end() ? dflt : it->second;
  }
  std::string s(const std::string& k, const std::string& dflt) const {
    auto it = str.find(k);
    return it == str.end() ? dflt : it->second;
  }
};

template <class T>
std::vector<T> read_raw(const std::string& path, std::size_t count) {
  std::vector<T> v(count);
  std::ifstream f(path, std::ios::binary);
  f.read(reinterpret_cast<char*>(v.data()), static_cast<std::streamsize>(count * sizeof(T)));
  if (!f) throw std::runtime_error("cannot read " + path);
  return v;
}

template <class T>
void write_raw(const inputs& in, const std::string& name, const std::vector<T>& v) {
  std::ofstream f(in.dir + "/" + name + ".bin", std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), static_cast<std::streamsize>(v.size() * sizeof(T)));
}

inputs read_inputs(const std::string& dir) {
  inputs in;
  in.dir = dir;
  std::ifstream f(dir + "/args.txt");
  std::string line;
  while (std::getline(f, line)) {
    std::istringstream ls(line);
    std::string type, name;
    ls >> type >> name;
    if (type == "call") {
      in.call = name;
    } else if (type == "f32") {
      f32_array a;
      ls >> a.rows >> a.cols;
      a.data = read_raw<float>(dir + "/" + name + ".bin", a.rows * a.cols);
      in.f32[name] = std::move(a);
    } else if (type == "f64") {
      std::size_t len = 0;
      ls >> len;
      in.f64[name] = read_raw<double>(dir + "/" + name + ".bin", len);
    } else if (type == "u64") {
      std::size_t len = 0;
      ls >> len;
      auto raw = read_raw<std::uint64_t>(dir + "/" + name + ".bin", len);
      in.u64[name] = std::vector<std::size_t>(raw.begin(), raw.end());
    } else if (type == "num") {
      double v = 0;
      ls >> v;
      in.num[name] = v;
    } else if (type == "str") {
      std::string v;
      ls >> v;
      in.str[name] = v;
    }
  }
  return in;
}

attnpool::mask parse_mask(const std::string& s) {
  if (s == "leave_one_out") return attnpool::mask::leave_one_out;
  if (s == "valid_length") return attnpool::mask::valid_length;
  return attnpool::mask::none;
}

attnpool::empty_support parse_empty(const std::string& s) {
  if (s == "nan") return attnpool::empty_support::nan;
  if (s == "nearest") return attnpool::empty_support::nearest;
  return attnpool::empty_support::error;
}

attnpool::pool_params params_of(const inputs& in) {
  attnpool::pool_params p;
  p.bandwidth = in.n("bandwidth", 1.0);
  p.kernel = attnpool::parse_kernel(in.s("kernel", "gaussian").c_str());
  if (in.f64.count("bandwidths")) p.bandwidths = in.f64.at("bandwidths");
  p.empty = parse_empty(in.s("empty", "error"));
  p.mask = parse_mask(in.s("mask", "none"));
  if (in.u64.count("valid_lens")) p.valid_lens = in.u64.at("valid_lens");
  return p;
}

attnpool::options options_of(const inputs& in) {
  attnpool::options o;
  o.backend = attnpool::parse_backend(in.s("backend", "cpu").c_str());
  o.threads = static_cast<unsigned>(in.n("threads", 0));
  return o;
}

void run(const inputs& in, std::ostream& results) {
  const auto params = params_of(in);
  const auto opts = options_of(in);
  results.precision(17);
  if (in.call == "pool" || in.call == "pool_batched") {
    const auto& q = in.a("queries");
    const auto& v = in.a("values");
    std::vector<float> out(q.rows * v.cols);
    if (in.call == "pool") {
      attnpool::pool(q.view(), in.a("keys").view(), v.view(), {out.data(), q.rows, v.cols}, params,
                     opts);
    } else {
      attnpool::pool_batched(q.view(), in.a("keys").view(), v.view(), {out.data(), q.rows, v.cols},
                             in.u64.at("query_offsets"), in.u64.at("key_offsets"), params, opts);
    }
    write_raw(in, "out", out);
  } else if (in.call == "attention_weights") {
    const auto& q = in.a("queries");
    const auto& k = in.a("keys");
    std::vector<float> w(q.rows * k.rows);
    attnpool::attention_weights(q.view(), k.view(), {w.data(), q.rows, k.rows}, params, opts);
    write_raw(in, "out", w);
  } else if (in.call == "average_pool") {
    const auto& v = in.a("values");
    const auto n = static_cast<std::size_t>(in.n("n", 0));
    std::vector<float> out(n * v.cols);
    attnpool::average_pool(v.view(), {out.data(), n, v.cols}, opts);
    write_raw(in, "out", out);
  } else if (in.call == "pool_backward") {
    const auto& q = in.a("queries");
    const auto& k = in.a("keys");
    const auto& v = in.a("values");
    std::vector<float> dq(q.rows * q.cols), dk(k.rows * k.cols), dv(v.rows * v.cols);
    double dh = 0;
    attnpool::pool_gradients g{{dq.data(), q.rows, q.cols}, {dk.data(), k.rows, k.cols},
                               {dv.data(), v.rows, v.cols}, &dh};
    attnpool::pool_backward(q.view(), k.view(), v.view(), in.a("dout").view(), g, params, opts);
    write_raw(in, "dq", dq);
    write_raw(in, "dk", dk);
    write_raw(in, "dv", dv);
    results << "dh " << dh << "\n";
  } else if (in.call == "loo_cv_error") {
    write_raw(in, "cv", attnpool::loo_cv_error(in.a("x").view(), in.a("y").view(),
                                               in.f64.at("bandwidths"), opts));
  } else if (in.call == "select_bandwidth") {
    attnpool::bandwidth_search s;
    s.grid_size = static_cast<std::size_t>(in.n("grid_size", 64));
    s.h_min = in.n("h_min", 0.0);
    s.h_max = in.n("h_max", 0.0);
    s.refine = in.n("refine", 1) != 0;
    s.log_tolerance = in.n("log_tolerance", 1e-3);
    s.per_dimension = in.n("per_dimension", 0) != 0;
    const auto r = attnpool::select_bandwidth(in.a("x").view(), in.a("y").view(), s, opts);
    results << "bandwidth " << r.bandwidth << "\ncv_error " << r.cv_error << "\nevaluations "
            << r.evaluations << "\nat_boundary " << r.at_boundary << "\nisotropic_cv_error "
            << r.isotropic_cv_error << "\n";
    write_raw(in, "grid", r.grid);
    write_raw(in, "cv", r.cv);
    write_raw(in, "bandwidths", r.bandwidths);
  } else if (in.call == "train_parametric") {
    // "book" != 0: train_options::book() (then learning_rate and epochs apply), else the default.
    attnpool::train_options t =
        in.n("book", 0) != 0 ? attnpool::train_options::book() : attnpool::train_options{};
    t.learning_rate = in.n("learning_rate", 0.5);
    t.max_epochs = static_cast<std::size_t>(in.n("epochs", static_cast<double>(t.max_epochs)));
    t.per_dimension = in.n("per_dimension", 0) != 0;
    t.seed = static_cast<std::uint64_t>(in.n("seed", 0));
    if (in.f64.count("initial_w")) t.initial_w = in.f64.at("initial_w");
    const auto r = attnpool::train_parametric(in.a("x").view(), in.a("y").view(), t, opts);
    results << "final_loss " << r.final_loss << "\nevaluations " << r.evaluations << "\n";
    write_raw(in, "w", r.w);
    write_raw(in, "loss", r.loss);
    write_raw(in, "gradient", r.gradient);
  } else if (in.call == "pool_partial") {
    // Two shards (keys split at "split"), their states, and the merge.
    const auto& q = in.a("queries");
    const auto& k = in.a("keys");
    const auto& v = in.a("values");
    const auto split = static_cast<std::size_t>(in.n("split", 1));
    const attnpool::const_view k0{k.data.data(), split, k.cols}, v0{v.data.data(), split, v.cols};
    const attnpool::const_view k1{k.data.data() + split * k.cols, k.rows - split, k.cols};
    const attnpool::const_view v1{v.data.data() + split * v.cols, v.rows - split, v.cols};
    std::vector<attnpool::partial_states> s = {attnpool::pool_partial(q.view(), k0, v0, params, opts),
                                               attnpool::pool_partial(q.view(), k1, v1, params, opts)};
    for (int i = 0; i < 2; ++i) {
      write_raw(in, "max" + std::to_string(i), s[i].max);
      write_raw(in, "sum" + std::to_string(i), s[i].sum);
      write_raw(in, "acc" + std::to_string(i), s[i].acc);
    }
    std::vector<float> out(q.rows * v.cols);
    attnpool::merge_partials(s, {out.data(), q.rows, v.cols}, params);
    write_raw(in, "out", out);
  } else {
    throw std::runtime_error("unknown call '" + in.call + "'");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: attnpool-cpp-results DIR\n";
    return 2;
  }
  try {
    const inputs in = read_inputs(argv[1]);
    std::ofstream results(in.dir + "/results.txt");
    run(in, results);
  } catch (const attnpool::error& e) {
    std::ofstream(std::string(argv[1]) + "/error.txt") << e.what();
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "attnpool-cpp-results: " << e.what() << "\n";
    return 2;
  }
  return 0;
}
