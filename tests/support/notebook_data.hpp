// The notebook's printed training inputs, shared by the tests that use the notebook's own data
// (tests/core/test_notebook.cpp, tests/learn/test_train.cpp).
#pragma once

#include <vector>

namespace attnpool::test {

/// x from the notebook's `x, y` cell: 100 sorted inputs in [0, 10), printed to 4 decimals.
/// (Its y is not printed; tests draw y = x + sin x + N(0, 1) as the notebook does.)
inline const std::vector<float>& notebook_train_x() {
  static const std::vector<float> x = {
    0.1276f, 0.2560f, 0.6350f, 0.7076f, 0.7956f, 0.9769f, 1.1247f, 1.3391f, 1.4196f, 1.5032f,
    1.5190f, 1.5493f, 1.7273f, 1.9054f, 1.9171f, 2.0815f, 2.2663f, 2.3772f, 2.7285f, 2.7394f,
    2.8468f, 2.8703f, 2.9657f, 2.9818f, 3.0011f, 3.0170f, 3.1638f, 3.2041f, 3.2094f, 3.4106f,
    3.5534f, 3.6055f, 3.6444f, 3.7070f, 3.7443f, 3.7587f, 3.8882f, 4.0198f, 4.0785f, 4.1025f,
    4.1752f, 4.3480f, 4.5596f, 4.6507f, 4.8067f, 4.8519f, 4.9450f, 5.0531f, 5.1158f, 5.1744f,
    5.1993f, 5.2039f, 5.2920f, 5.3946f, 5.4688f, 5.5184f, 5.5838f, 5.7287f, 6.0539f, 6.0585f,
    6.1641f, 6.4072f, 6.5302f, 6.5337f, 6.5966f, 6.6132f, 6.6385f, 6.7121f, 6.8031f, 6.8903f,
    6.9509f, 7.1060f, 7.1377f, 7.2711f, 7.4790f, 7.5434f, 7.7528f, 7.8160f, 7.8948f, 8.1408f,
    8.2161f, 8.3000f, 8.3002f, 8.3348f, 8.6009f, 8.6944f, 8.7547f, 8.7901f, 8.8199f, 8.8714f,
    8.9385f, 9.0239f, 9.4925f, 9.5909f, 9.6222f, 9.6546f, 9.8443f, 9.8456f, 9.8775f, 9.9371f};
  return x;
}

}  // namespace attnpool::test
