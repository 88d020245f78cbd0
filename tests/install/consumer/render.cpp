// The installed renderer: draw a tiny plot and write it next to the consumer binary.
#include <attnpool/render.hpp>

#include <vector>

void draw_plot() {
  attnpool::render::figure fig(1.6, 1.2);
  auto& ax = fig.add_subplot();
  const std::vector<double> x = {0, 1, 2}, y = {0, 1, 4};
  ax.plot(x, y);
  fig.save_png("consumer_plot.png");
}
