// The notebook's own numbers: from its printed 100 training inputs (4 decimals), reproduce the
// first and last rows of its printed 100 x 100 weight matrix (5 significant digits).
#include <attnpool/pool.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "notebook_data.hpp"
#include "test_support.hpp"

namespace {

const std::vector<float>& kTrainX = attnpool::test::notebook_train_x();

struct printed {
  std::size_t row;  // query x_curve[row] = row / 10
  std::size_t col;
  double value;
};

// The weight cells the notebook prints (first three and last three columns of rows 0, 1, 2,
// 97, 98, 99).
const std::vector<printed> kPrinted = {
    {0, 0, 1.2240e-01},  {0, 1, 1.1942e-01},  {0, 2, 1.0087e-01},  {0, 97, 1.1017e-22},
    {0, 98, 8.0437e-23}, {0, 99, 4.4554e-23}, {1, 0, 1.1244e-01},  {1, 1, 1.1112e-01},
    {1, 2, 9.7487e-02},  {1, 97, 2.6746e-22}, {1, 98, 1.9590e-22}, {1, 99, 1.0916e-22},
    {2, 0, 1.0286e-01},  {2, 1, 1.0297e-01},  {2, 2, 9.3824e-02},  {2, 97, 6.4660e-22},
    {2, 98, 4.7512e-22}, {2, 99, 2.6632e-22}, {97, 0, 7.9130e-22}, {97, 1, 2.6830e-21},
    {97, 2, 8.9501e-20}, {97, 97, 6.1834e-02}, {97, 98, 6.1517e-02}, {97, 99, 6.0761e-02},
    {98, 0, 3.2071e-22}, {98, 1, 1.1014e-21}, {98, 2, 3.8162e-20}, {98, 97, 6.6229e-02},
    {98, 98, 6.6099e-02}, {98, 99, 6.5677e-02}, {99, 0, 1.2941e-22}, {99, 1, 4.5018e-22},
    {99, 2, 1.6200e-20}, {99, 97, 7.0621e-02}, {99, 98, 7.0708e-02}, {99, 99, 7.0677e-02}};

class Notebook : public ::testing::TestWithParam<attnpool::backend> {};

TEST_P(Notebook, ReproducesThePrintedWeights) {
  std::vector<float> queries(100);
  for (std::size_t i = 0; i < 100; ++i) queries[i] = static_cast<float>(i) * 0.1f;  // arange
  attnpool::options opts;
  opts.backend = GetParam();
  const auto w = attnpool::attention_weights(queries, kTrainX, 1, {1.0}, opts);
  for (const printed& p : kPrinted) {
    // Tolerance from the rounding of the printed inputs. Each x_j is known to +-5e-5, so the
    // score s_j = -(q - x_j)^2 / 2 is known to +-|q - x_j| * 5e-5, and the weight
    // w_j = exp(s_j) / sum_l exp(s_l) to a relative +-5e-5 * (|q - x_j| + max_l |q - x_l|):
    // about 1e-3 for the smallest weights, whose keys are ~10 away. The printed weights are
    // rounded to 5 significant digits (5e-5 relative), and the float32 computation adds
    // (d + 4) eps |s_j| <= 5 * 1.2e-7 * 50 = 3e-5.
    const double q = static_cast<double>(queries[p.row]);
    const double far = std::max(std::fabs(q - kTrainX.front()), std::fabs(q - kTrainX.back()));
    const double rel = 5e-5 * (std::fabs(q - kTrainX[p.col]) + far) + 5e-5 + 3e-5;
    EXPECT_NEAR(w[p.row * 100 + p.col], p.value, rel * p.value)
        << "w(" << p.row << ", " << p.col << ")";
  }
  for (std::size_t i = 0; i < 100; ++i) {
    double sum = 0.0;
    for (std::size_t j = 0; j < 100; ++j) sum += w[i * 100 + j];
    EXPECT_NEAR(sum, 1.0, 1e-5) << "row " << i << " is not stochastic";
  }
}

INSTANTIATE_TEST_SUITE_P(Host, Notebook,
                         ::testing::Values(attnpool::backend::reference, attnpool::backend::cpu),
                         attnpool::test::backend_name);

}  // namespace
