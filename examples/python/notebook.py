"""The attention-pooling notebook (Dive into Deep Learning, "Attention Pooling") in Python with
attnpool, end to end on the CPU: the data, average pooling, Nadaraya-Watson with h = 1 and its
weights, then the book's next section, the parametric pooling trained on the leave-one-out error
and the bandwidth chosen by leave-one-out cross-validation.

    python examples/python/notebook.py [--seed S] [--backend B]

Prints one line a step; needs only NumPy.
"""

import argparse

import numpy as np

import attnpool


def f(x):
    return 2 * np.sin(x) + x ** 0.8


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--backend", default="automatic")
    args = ap.parse_args(argv)
    rng = np.random.default_rng(args.seed)

    # The data: 50 noisy training points of f, 50 test inputs on [0, 5).
    n_train = 50
    x_train = np.sort(rng.uniform(0, 5, n_train)).astype(np.float32)
    y_train = (f(x_train) + rng.normal(0.0, 0.5, n_train)).astype(np.float32)
    x_test = np.arange(0, 5, 0.1, dtype=np.float32)
    y_truth = f(x_test)
    mse = lambda y_hat: float(np.mean((y_hat - y_truth) ** 2))  # noqa: E731

    # Average pooling: every prediction is the mean of the targets.
    y_avg = attnpool.average_pool(y_train, len(x_test), backend=args.backend)
    print(f"average pooling:        mse {mse(y_avg):.4f}")

    # Nadaraya-Watson with the Gaussian kernel, h = 1, and its weights (the heatmap's matrix).
    y_nw = attnpool.pool(x_test, x_train, y_train, 1.0, backend=args.backend)
    w = attnpool.attention_weights(x_test, x_train, 1.0, backend=args.backend)
    assert np.allclose(w.sum(axis=1), 1, atol=1e-5) and np.allclose(w @ y_train, y_nw, atol=1e-4)
    print(f"nadaraya-watson, h = 1: mse {mse(y_nw):.4f}, weights {w.shape[0]} x {w.shape[1]}")

    # The parametric pooling as the book trains it: 5 epochs of gradient descent at lr 0.5 on the
    # summed leave-one-out loss (its first step overshoots to a tiny h; see train_parametric).
    book = attnpool.train_parametric(x_train, y_train, method="book_sgd", max_epochs=5,
                                     learning_rate=0.5, seed=args.seed, backend=args.backend)
    for epoch, loss in enumerate(book.loss, 1):
        print(f"epoch {epoch}, loss {loss:.6f}")
    h_book = 1.0 / abs(book.w[0])
    y_book = attnpool.pool(x_test, x_train, y_train, h_book, backend=args.backend)
    print(f"parametric, book's run: w {book.w[0]:.4f} (h = {h_book:.4f}), mse {mse(y_book):.4f}")

    # The same model trained to the leave-one-out minimum (the default: quasi-Newton on ln w).
    fit = attnpool.train_parametric(x_train, y_train, seed=args.seed, backend=args.backend)
    h_learned = 1.0 / abs(fit.w[0])
    y_par = attnpool.pool(x_test, x_train, y_train, h_learned, backend=args.backend)
    print(f"parametric, trained:    w {fit.w[0]:.4f} (h = {h_learned:.4f}, {fit.stop} after "
          f"{fit.evaluations} evaluations), mse {mse(y_par):.4f}")

    # The bandwidth chosen by leave-one-out cross-validation.
    sel = attnpool.select_bandwidth(x_train, y_train, backend=args.backend)
    y_cv = attnpool.pool(x_test, x_train, y_train, sel.bandwidth, backend=args.backend)
    print(f"cross-validated h:      {sel.bandwidth:.4f} (cv {sel.cv_error:.4f}, "
          f"{sel.evaluations} evaluations), mse {mse(y_cv):.4f}")
    return dict(average=mse(y_avg), nw=mse(y_nw), book=mse(y_book), parametric=mse(y_par),
                cv=mse(y_cv), h_trained=h_learned, h_cv=sel.bandwidth)


if __name__ == "__main__":
    main()
