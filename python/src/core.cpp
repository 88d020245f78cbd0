// attnpool._core: the nanobind layer between Python and the C++ library. It does no maths and
// makes no copies: the Python package (python/attnpool/_arrays.py) hands it float32 arrays whose
// rows are contiguous and preallocated outputs, this file turns them into views, releases the GIL
// and calls the same entry points the C++ users call. Every check and every message stays in the
// library; C++ exceptions become attnpool.InvalidArgument / attnpool.CudaError unchanged.
#include <attnpool/batched.hpp>
#include <attnpool/cuda.hpp>
#include <attnpool/error.hpp>
#include <attnpool/learn.hpp>
#include <attnpool/pool.hpp>
#include <attnpool/version.hpp>

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/tuple.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

namespace nb = nanobind;
using namespace nb::literals;

namespace {

using in_matrix = nb::ndarray<const float, nb::ndim<2>, nb::device::cpu>;
using out_matrix = nb::ndarray<float, nb::ndim<2>, nb::device::cpu>;
using in_doubles = nb::ndarray<const double, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using in_counts = nb::ndarray<const std::uint64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
static_assert(sizeof(std::size_t) == sizeof(std::uint64_t), "valid_lens and offsets are uint64");

using release_gil = nb::call_guard<nb::gil_scoped_release>;

// A view of a 2-D array whose rows are contiguous. The row stride becomes the leading dimension;
// a single row may have any stride (it is never read). Other layouts are converted in Python, so
// reaching the error here means a caller bypassed attnpool's own functions.
template <class T, class Array>
attnpool::matrix_view<T> as_view(const Array& a, const char* name) {
  const std::size_t rows = a.shape(0), cols = a.shape(1);
  if (rows == 0 || cols == 0) return {static_cast<T*>(a.data()), rows, cols, cols};
  ATTNPOOL_EXPECTS(cols == 1 || a.stride(1) == 1, name,
                   ": the elements of a row must be contiguous, got a column stride of ",
                   a.stride(1));
  if (rows == 1) return {static_cast<T*>(a.data()), rows, cols, cols};
  ATTNPOOL_EXPECTS(a.stride(0) > 0, name, ": the row stride must be positive, got ", a.stride(0));
  return {static_cast<T*>(a.data()), rows, cols, static_cast<std::size_t>(a.stride(0))};
}

attnpool::const_view in_view(const in_matrix& a, const char* name) {
  return as_view<const float>(a, name);
}
attnpool::mutable_view out_view(const out_matrix& a, const char* name) {
  return as_view<float>(a, name);
}

attnpool::mask parse_mask(const std::string& name) {
  for (attnpool::mask m : {attnpool::mask::none, attnpool::mask::leave_one_out,
                           attnpool::mask::valid_length}) {
    if (name == attnpool::to_string(m)) return m;
  }
  throw attnpool::invalid_argument(attnpool::detail::concat(
      "mask must be one of none, leave_one_out, valid_length; got '", name, "'"));
}

attnpool::empty_support parse_empty(const std::string& name) {
  if (name == "error") return attnpool::empty_support::error;
  if (name == "nan") return attnpool::empty_support::nan;
  if (name == "nearest") return attnpool::empty_support::nearest;
  throw attnpool::invalid_argument(
      attnpool::detail::concat("empty must be one of error, nan, nearest; got '", name, "'"));
}

// pool_params from the Python keywords. The spans point into the caller's arrays, which the
// argument casters keep alive for the whole call.
attnpool::pool_params make_params(double bandwidth, const std::string& kernel,
                                  const std::optional<in_doubles>& bandwidths,
                                  const std::string& empty, const std::string& mask,
                                  const std::optional<in_counts>& valid_lens) {
  attnpool::pool_params p;
  p.bandwidth = bandwidth;
  p.kernel = attnpool::parse_kernel(kernel.c_str());
  if (bandwidths) p.bandwidths = {bandwidths->data(), bandwidths->shape(0)};
  p.empty = parse_empty(empty);
  p.mask = parse_mask(mask);
  if (valid_lens) {
    p.valid_lens = {reinterpret_cast<const std::size_t*>(valid_lens->data()),
                    valid_lens->shape(0)};
  }
  return p;
}

attnpool::options make_options(const std::string& backend, unsigned threads, bool check_finite) {
  attnpool::options o;
  o.backend = attnpool::parse_backend(backend.c_str());
  o.threads = threads;
  o.check_finite = check_finite;
  return o;
}

// A NumPy array that owns a moved-in vector (created with the GIL held).
template <class T>
nb::ndarray<nb::numpy, T> to_numpy(std::vector<T>&& v, std::initializer_list<std::size_t> shape) {
  auto* heap = new std::vector<T>(std::move(v));
  nb::capsule owner(heap, [](void* p) noexcept { delete static_cast<std::vector<T>*>(p); });
  return nb::ndarray<nb::numpy, T>(heap->data(), shape, owner);
}

// The keyword arguments every pool-like call shares, in the order the Python layer passes them.
#define ATTNPOOL_PARAM_ARGS                                                                  \
  "bandwidth"_a, "kernel"_a, "bandwidths"_a.none(), "empty"_a, "mask"_a, "valid_lens"_a.none(), \
      "backend"_a, "threads"_a, "check_finite"_a

void pool(const in_matrix& q, const in_matrix& k, const in_matrix& v, const out_matrix& out,
          double bandwidth, const std::string& kernel, const std::optional<in_doubles>& bandwidths,
          const std::string& empty, const std::string& mask,
          const std::optional<in_counts>& valid_lens, const std::string& backend, unsigned threads,
          bool check_finite) {
  attnpool::pool(in_view(q, "queries"), in_view(k, "keys"), in_view(v, "values"),
                 out_view(out, "out"),
                 make_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens),
                 make_options(backend, threads, check_finite));
}

void attention_weights(const in_matrix& q, const in_matrix& k, const out_matrix& w,
                       double bandwidth, const std::string& kernel,
                       const std::optional<in_doubles>& bandwidths, const std::string& empty,
                       const std::string& mask, const std::optional<in_counts>& valid_lens,
                       const std::string& backend, unsigned threads, bool check_finite) {
  attnpool::attention_weights(in_view(q, "queries"), in_view(k, "keys"), out_view(w, "weights"),
                              make_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens),
                              make_options(backend, threads, check_finite));
}

void average_pool(const in_matrix& v, const out_matrix& out, const std::string& backend,
                  unsigned threads, bool check_finite) {
  attnpool::average_pool(in_view(v, "values"), out_view(out, "out"),
                         make_options(backend, threads, check_finite));
}

// Returns dL/dh when want_dh, else None; the gradient arrays that are given are written.
std::optional<double> pool_backward(const in_matrix& q, const in_matrix& k, const in_matrix& v,
                                    const in_matrix& dout, const std::optional<out_matrix>& dq,
                                    const std::optional<out_matrix>& dk,
                                    const std::optional<out_matrix>& dv, bool want_dh,
                                    double bandwidth, const std::string& kernel,
                                    const std::optional<in_doubles>& bandwidths,
                                    const std::string& empty, const std::string& mask,
                                    const std::optional<in_counts>& valid_lens,
                                    const std::string& backend, unsigned threads,
                                    bool check_finite) {
  double dh = 0.0;
  attnpool::pool_gradients g;
  if (dq) g.queries = out_view(*dq, "dq");
  if (dk) g.keys = out_view(*dk, "dk");
  if (dv) g.values = out_view(*dv, "dv");
  if (want_dh) g.bandwidth = &dh;
  attnpool::pool_backward(in_view(q, "queries"), in_view(k, "keys"), in_view(v, "values"),
                          in_view(dout, "dout"), g,
                          make_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens),
                          make_options(backend, threads, check_finite));
  if (!want_dh) return std::nullopt;
  return dh;
}

void pool_batched(const in_matrix& q, const in_matrix& k, const in_matrix& v,
                  const out_matrix& out, const in_counts& query_offsets,
                  const in_counts& key_offsets, double bandwidth, const std::string& kernel,
                  const std::optional<in_doubles>& bandwidths, const std::string& empty,
                  const std::string& mask, const std::optional<in_counts>& valid_lens,
                  const std::string& backend, unsigned threads, bool check_finite) {
  attnpool::pool_batched(
      in_view(q, "queries"), in_view(k, "keys"), in_view(v, "values"), out_view(out, "out"),
      {reinterpret_cast<const std::size_t*>(query_offsets.data()), query_offsets.shape(0)},
      {reinterpret_cast<const std::size_t*>(key_offsets.data()), key_offsets.shape(0)},
      make_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens),
      make_options(backend, threads, check_finite));
}

using numpy_f32 = nb::ndarray<nb::numpy, float>;

// (max, sum, acc) as NumPy arrays: the C++ call allocates them, so they are moved out.
std::tuple<numpy_f32, numpy_f32, numpy_f32> pool_partial(
    const in_matrix& q, const in_matrix& k, const in_matrix& v, double bandwidth,
    const std::string& kernel, const std::optional<in_doubles>& bandwidths,
    const std::string& empty, const std::string& mask, const std::optional<in_counts>& valid_lens,
    const std::string& backend, unsigned threads, bool check_finite, std::size_t key_offset) {
  const auto params = make_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens);
  const auto opts = make_options(backend, threads, check_finite);
  attnpool::partial_states s;
  {
    nb::gil_scoped_release unlocked;
    s = attnpool::pool_partial(in_view(q, "queries"), in_view(k, "keys_shard"),
                               in_view(v, "values_shard"), params, opts, key_offset);
  }
  const std::size_t n = s.n, dv = s.dv;
  return {to_numpy(std::move(s.max), {n}), to_numpy(std::move(s.sum), {n}),
          to_numpy(std::move(s.acc), {n, dv})};
}

using in_vector = nb::ndarray<const float, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using in_acc = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

// The shards are copied into partial_states (the C++ API owns its states in vectors).
void merge_partials(const std::vector<std::tuple<in_vector, in_vector, in_acc>>& shards,
                    const out_matrix& out, const std::string& kernel, const std::string& empty) {
  std::vector<attnpool::partial_states> states;
  states.reserve(shards.size());
  for (std::size_t s = 0; s < shards.size(); ++s) {
    const auto& [mx, sm, acc] = shards[s];
    const std::size_t n = acc.shape(0), dv = acc.shape(1);
    ATTNPOOL_EXPECTS(mx.shape(0) == n && sm.shape(0) == n, "merge_partials: shard ", s,
                     " has ", mx.shape(0), " max and ", sm.shape(0), " sum entries for ", n,
                     " accumulator rows");
    attnpool::partial_states p;
    p.n = n;
    p.dv = dv;
    p.max.assign(mx.data(), mx.data() + n);
    p.sum.assign(sm.data(), sm.data() + n);
    p.acc.assign(acc.data(), acc.data() + n * dv);
    states.push_back(std::move(p));
  }
  attnpool::pool_params params;
  params.kernel = attnpool::parse_kernel(kernel.c_str());
  params.empty = parse_empty(empty);
  nb::gil_scoped_release unlocked;
  attnpool::merge_partials(states, out_view(out, "out"), params);
}

// ---- CUDA arrays: device pointers from python/attnpool/_device.py ----------------------------

// (pointer, rows, cols, leading dimension) of a float32 matrix in device memory. The Python layer
// reads them off a PyTorch or CuPy array on the caller's device; the library validates the shapes.
using device_matrix = std::tuple<std::uintptr_t, std::size_t, std::size_t, std::size_t>;

template <class T>
attnpool::matrix_view<T> device_view(const device_matrix& a) {
  const auto& [ptr, rows, cols, ld] = a;
  return {reinterpret_cast<T*>(ptr), rows, cols, ld};
}

attnpool::options device_options(const std::string& backend, bool check_finite,
                                 std::uintptr_t stream, std::uintptr_t workspace,
                                 std::size_t workspace_bytes) {
  attnpool::options o = make_options(backend, 0, check_finite);
  o.stream = reinterpret_cast<attnpool::stream_t>(stream);
  o.workspace = workspace_bytes == 0 ? nullptr : reinterpret_cast<void*>(workspace);
  o.workspace_bytes = workspace_bytes;
  return o;
}

std::size_t cuda_pool_workspace_size(std::size_t n, std::size_t m, std::size_t d, std::size_t dv,
                                     double bandwidth, const std::string& kernel,
                                     const std::optional<in_doubles>& bandwidths,
                                     const std::string& empty, const std::string& mask,
                                     const std::optional<in_counts>& valid_lens,
                                     const std::string& backend) {
  return attnpool::cuda::pool_workspace_size(
      n, m, d, dv, make_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens),
      attnpool::parse_backend(backend.c_str()));
}

void cuda_pool(const device_matrix& q, const device_matrix& k, const device_matrix& v,
               const device_matrix& out, double bandwidth, const std::string& kernel,
               const std::optional<in_doubles>& bandwidths, const std::string& empty,
               const std::string& mask, const std::optional<in_counts>& valid_lens,
               const std::string& backend, bool check_finite, std::uintptr_t stream,
               std::uintptr_t workspace, std::size_t workspace_bytes) {
  attnpool::cuda::pool(device_view<const float>(q), device_view<const float>(k),
                       device_view<const float>(v), device_view<float>(out),
                       make_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens),
                       device_options(backend, check_finite, stream, workspace, workspace_bytes));
}

std::size_t cuda_pool_backward_workspace_size(std::size_t n, std::size_t m, std::size_t d,
                                              std::size_t dv, double bandwidth,
                                              const std::string& kernel,
                                              const std::optional<in_doubles>& bandwidths,
                                              const std::string& empty, const std::string& mask,
                                              const std::optional<in_counts>& valid_lens,
                                              const std::string& /*backend*/) {
  return attnpool::cuda::pool_backward_workspace_size(
      n, m, d, dv, make_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens));
}

// dh, when not 0, is the device address of one double.
void cuda_pool_backward(const device_matrix& q, const device_matrix& k, const device_matrix& v,
                        const device_matrix& dout, const std::optional<device_matrix>& dq,
                        const std::optional<device_matrix>& dk,
                        const std::optional<device_matrix>& dv, std::uintptr_t dh, double bandwidth,
                        const std::string& kernel, const std::optional<in_doubles>& bandwidths,
                        const std::string& empty, const std::string& mask,
                        const std::optional<in_counts>& valid_lens, const std::string& backend,
                        bool check_finite, std::uintptr_t stream, std::uintptr_t workspace,
                        std::size_t workspace_bytes) {
  attnpool::pool_gradients g;
  if (dq) g.queries = device_view<float>(*dq);
  if (dk) g.keys = device_view<float>(*dk);
  if (dv) g.values = device_view<float>(*dv);
  if (dh != 0) g.bandwidth = reinterpret_cast<double*>(dh);
  attnpool::cuda::pool_backward(
      device_view<const float>(q), device_view<const float>(k), device_view<const float>(v),
      device_view<const float>(dout), g,
      make_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens),
      device_options(backend, check_finite, stream, workspace, workspace_bytes));
}

std::size_t cuda_attention_weights_workspace_size(std::size_t n, std::size_t m, std::size_t d,
                                                  double bandwidth, const std::string& kernel,
                                                  const std::optional<in_doubles>& bandwidths,
                                                  const std::string& empty, const std::string& mask,
                                                  const std::optional<in_counts>& valid_lens,
                                                  const std::string& /*backend*/) {
  return attnpool::cuda::attention_weights_workspace_size(
      n, m, d, make_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens));
}

void cuda_attention_weights(const device_matrix& q, const device_matrix& k, const device_matrix& w,
                            double bandwidth, const std::string& kernel,
                            const std::optional<in_doubles>& bandwidths, const std::string& empty,
                            const std::string& mask, const std::optional<in_counts>& valid_lens,
                            const std::string& backend, bool check_finite, std::uintptr_t stream,
                            std::uintptr_t workspace, std::size_t workspace_bytes) {
  attnpool::cuda::attention_weights(
      device_view<const float>(q), device_view<const float>(k), device_view<float>(w),
      make_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens),
      device_options(backend, check_finite, stream, workspace, workspace_bytes));
}

void cuda_average_pool(const device_matrix& v, const device_matrix& out, const std::string& backend,
                       bool check_finite, std::uintptr_t stream) {
  attnpool::cuda::average_pool(device_view<const float>(v), device_view<float>(out),
                               device_options(backend, check_finite, stream, 0, 0));
}

std::size_t cuda_pool_batched_workspace_size(std::size_t problems, std::size_t total_queries,
                                             std::size_t d, std::size_t dv, double bandwidth,
                                             const std::string& kernel,
                                             const std::optional<in_doubles>& bandwidths,
                                             const std::string& empty, const std::string& mask,
                                             const std::optional<in_counts>& valid_lens,
                                             const std::string& /*backend*/) {
  return attnpool::cuda::pool_batched_workspace_size(
      problems, total_queries, d, dv,
      make_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens));
}

// The offsets stay host arrays (the library reads them before it returns).
void cuda_pool_batched(const device_matrix& q, const device_matrix& k, const device_matrix& v,
                       const device_matrix& out, const in_counts& query_offsets,
                       const in_counts& key_offsets, double bandwidth, const std::string& kernel,
                       const std::optional<in_doubles>& bandwidths, const std::string& empty,
                       const std::string& mask, const std::optional<in_counts>& valid_lens,
                       const std::string& backend, bool check_finite, std::uintptr_t stream,
                       std::uintptr_t workspace, std::size_t workspace_bytes) {
  attnpool::cuda::pool_batched(
      device_view<const float>(q), device_view<const float>(k), device_view<const float>(v),
      device_view<float>(out),
      {reinterpret_cast<const std::size_t*>(query_offsets.data()), query_offsets.shape(0)},
      {reinterpret_cast<const std::size_t*>(key_offsets.data()), key_offsets.shape(0)},
      make_params(bandwidth, kernel, bandwidths, empty, mask, valid_lens),
      device_options(backend, check_finite, stream, workspace, workspace_bytes));
}

// ---- learning: one binding each, so that changes of the C++ structs touch one place ----------

std::vector<double> loo_cv_error(const in_matrix& x, const in_matrix& y, const in_doubles& h,
                                 const std::string& backend, unsigned threads,
                                 bool check_finite) {
  return attnpool::loo_cv_error(in_view(x, "x"), in_view(y, "y"), {h.data(), h.shape(0)},
                                make_options(backend, threads, check_finite));
}

// (bandwidth, cv_error, grid, cv, evaluations, at_boundary, bandwidths, isotropic_cv_error,
// per_dimension_stop), as bandwidth_selection.
std::tuple<double, double, std::vector<double>, std::vector<double>, std::size_t, bool,
           std::vector<double>, double, std::string>
select_bandwidth(const in_matrix& x, const in_matrix& y, std::size_t grid_size, double h_min,
                 double h_max, bool refine, double log_tolerance, bool per_dimension,
                 std::size_t max_iterations, const std::string& backend, unsigned threads,
                 bool check_finite) {
  attnpool::bandwidth_search search;
  search.grid_size = grid_size;
  search.h_min = h_min;
  search.h_max = h_max;
  search.refine = refine;
  search.log_tolerance = log_tolerance;
  search.per_dimension = per_dimension;
  search.max_iterations = max_iterations;
  auto r = attnpool::select_bandwidth(in_view(x, "x"), in_view(y, "y"), search,
                                      make_options(backend, threads, check_finite));
  return {r.bandwidth,           r.cv_error,
          std::move(r.grid),     std::move(r.cv),
          r.evaluations,         r.at_boundary,
          std::move(r.bandwidths), r.isotropic_cv_error,
          attnpool::to_string(r.per_dimension_stop)};
}

attnpool::train_method parse_method(const std::string& name) {
  for (attnpool::train_method m :
       {attnpool::train_method::quasi_newton, attnpool::train_method::book_sgd}) {
    if (name == attnpool::to_string(m)) return m;
  }
  throw attnpool::invalid_argument(attnpool::detail::concat(
      "method must be one of quasi_newton, book_sgd; got '", name, "'"));
}

// (w, loss, final_loss, gradient, stop, evaluations), as parametric_fit. max_epochs 0 takes the
// method's own default (train_options{} or train_options::book()).
std::tuple<std::vector<double>, std::vector<double>, double, std::vector<double>, std::string,
           std::size_t>
train_parametric(const in_matrix& x, const in_matrix& y, const std::string& method,
                 std::size_t max_epochs, double tolerance, double learning_rate,
                 bool per_dimension, std::uint64_t seed, const std::optional<in_doubles>& initial_w,
                 const std::string& backend, unsigned threads, bool check_finite) {
  const attnpool::train_method how = parse_method(method);
  attnpool::train_options t =
      how == attnpool::train_method::book_sgd ? attnpool::train_options::book()
                                              : attnpool::train_options{};
  if (max_epochs != 0) t.max_epochs = max_epochs;
  t.tolerance = tolerance;
  t.learning_rate = learning_rate;
  t.per_dimension = per_dimension;
  t.seed = seed;
  if (initial_w) t.initial_w.assign(initial_w->data(), initial_w->data() + initial_w->shape(0));
  auto r = attnpool::train_parametric(in_view(x, "x"), in_view(y, "y"), t,
                                      make_options(backend, threads, check_finite));
  return {std::move(r.w),        std::move(r.loss),           r.final_loss,
          std::move(r.gradient), attnpool::to_string(r.stop), r.evaluations};
}

}  // namespace

NB_MODULE(_core, m) {
  m.doc() = "attnpool's C++ engine; use the attnpool package, not this module.";
  m.attr("__version__") = ATTNPOOL_VERSION_STRING;

  auto base = nb::exception<attnpool::error>(m, "Error", PyExc_RuntimeError);
  nb::exception<attnpool::invalid_argument>(m, "InvalidArgument", PyExc_ValueError);
  nb::exception<attnpool::cuda_error>(m, "CudaError", base);

  m.def("pool", &pool, "queries"_a, "keys"_a, "values"_a, "out"_a, ATTNPOOL_PARAM_ARGS,
        release_gil());
  m.def("attention_weights", &attention_weights, "queries"_a, "keys"_a, "weights"_a,
        ATTNPOOL_PARAM_ARGS, release_gil());
  m.def("average_pool", &average_pool, "values"_a, "out"_a, "backend"_a, "threads"_a,
        "check_finite"_a, release_gil());
  m.def("pool_backward", &pool_backward, "queries"_a, "keys"_a, "values"_a, "dout"_a,
        "dq"_a.none(), "dk"_a.none(), "dv"_a.none(), "want_dh"_a, ATTNPOOL_PARAM_ARGS,
        release_gil());
  m.def("pool_batched", &pool_batched, "queries"_a, "keys"_a, "values"_a, "out"_a,
        "query_offsets"_a, "key_offsets"_a, ATTNPOOL_PARAM_ARGS, release_gil());
  m.def("pool_partial", &pool_partial, "queries"_a, "keys_shard"_a, "values_shard"_a,
        ATTNPOOL_PARAM_ARGS, "key_offset"_a);
  m.def("merge_partials", &merge_partials, "shards"_a, "out"_a, "kernel"_a, "empty"_a);
  m.def("loo_cv_error", &loo_cv_error, "x"_a, "y"_a, "bandwidths"_a, "backend"_a, "threads"_a,
        "check_finite"_a, release_gil());
  m.def("select_bandwidth", &select_bandwidth, "x"_a, "y"_a, "grid_size"_a, "h_min"_a, "h_max"_a,
        "refine"_a, "log_tolerance"_a, "per_dimension"_a, "max_iterations"_a, "backend"_a,
        "threads"_a, "check_finite"_a, release_gil());
  m.def("train_parametric", &train_parametric, "x"_a, "y"_a, "method"_a, "max_epochs"_a,
        "tolerance"_a, "learning_rate"_a, "per_dimension"_a, "seed"_a, "initial_w"_a.none(),
        "backend"_a, "threads"_a, "check_finite"_a, release_gil());
  // The device arrays' entry points (python/attnpool/_device.py); the shapes first, then the
  // pool keywords without threads, then check_finite, the stream and the workspace.
#define ATTNPOOL_DEVICE_PARAMS                                                                  \
  "bandwidth"_a, "kernel"_a, "bandwidths"_a.none(), "empty"_a, "mask"_a, "valid_lens"_a.none(), \
      "backend"_a
  m.def("cuda_pool_workspace_size", &cuda_pool_workspace_size, "n"_a, "m"_a, "d"_a, "dv"_a,
        ATTNPOOL_DEVICE_PARAMS);
  m.def("cuda_pool", &cuda_pool, "queries"_a, "keys"_a, "values"_a, "out"_a, ATTNPOOL_DEVICE_PARAMS,
        "check_finite"_a, "stream"_a, "workspace"_a, "workspace_bytes"_a, release_gil());
  m.def("cuda_pool_backward_workspace_size", &cuda_pool_backward_workspace_size, "n"_a, "m"_a,
        "d"_a, "dv"_a, ATTNPOOL_DEVICE_PARAMS);
  m.def("cuda_pool_backward", &cuda_pool_backward, "queries"_a, "keys"_a, "values"_a, "dout"_a,
        "dq"_a.none(), "dk"_a.none(), "dv"_a.none(), "dh"_a, ATTNPOOL_DEVICE_PARAMS,
        "check_finite"_a, "stream"_a, "workspace"_a, "workspace_bytes"_a, release_gil());
  m.def("cuda_attention_weights_workspace_size", &cuda_attention_weights_workspace_size, "n"_a,
        "m"_a, "d"_a, ATTNPOOL_DEVICE_PARAMS);
  m.def("cuda_attention_weights", &cuda_attention_weights, "queries"_a, "keys"_a, "weights"_a,
        ATTNPOOL_DEVICE_PARAMS, "check_finite"_a, "stream"_a, "workspace"_a, "workspace_bytes"_a,
        release_gil());
  m.def("cuda_average_pool", &cuda_average_pool, "values"_a, "out"_a, "backend"_a, "check_finite"_a,
        "stream"_a, release_gil());
  m.def("cuda_pool_batched_workspace_size", &cuda_pool_batched_workspace_size, "problems"_a,
        "total_queries"_a, "d"_a, "dv"_a, ATTNPOOL_DEVICE_PARAMS);
  m.def("cuda_pool_batched", &cuda_pool_batched, "queries"_a, "keys"_a, "values"_a, "out"_a,
        "query_offsets"_a, "key_offsets"_a, ATTNPOOL_DEVICE_PARAMS, "check_finite"_a, "stream"_a,
        "workspace"_a, "workspace_bytes"_a, release_gil());
#undef ATTNPOOL_DEVICE_PARAMS
  m.def("resolve_backend", [](const std::string& name) {
    return std::string(attnpool::to_string(attnpool::resolve_backend(
        attnpool::parse_backend(name.c_str()))));
  });
  m.def("cuda_available", &attnpool::cuda_available);
}
