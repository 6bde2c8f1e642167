"""Deep nets on spectrogram frames: our numpy CNN (and GRU) against PyTorch on the CPU, one run.

Same architecture, data shape (2000 training examples of 40 mel bands x 32 frames, 10 classes),
batch size 64, Adam (learning rate 1e-3, no weight decay), float32 and 2 threads on both sides
(``torch.set_num_threads(2)``; our BLAS limited to 2 threads, and to 1 in a third column).

    (a) two 1-D conv blocks of 64 channels, kernel 5 ('same'), max-pool 2, global average
        pooling, a dense output layer
    (b) two 2-D conv blocks of 16 and 32 channels, 3x3 ('same'), max-pool 2x2, the same head
    (c) a GRU of 64 units, many-to-one, a dense output layer

The task is learnable only from the order of events: 10 melodic contours (rising, falling,
rising then falling, ...) of four notes at a random pitch and onset in noise. Each seed trains a
fresh model of each kind for the same number of epochs, epoch by epoch in alternation (PyTorch,
ours with 2 BLAS threads, and for the first seed ours with 1), so that load on the machine hits
all of them alike. The table gives the median seconds per epoch, the median of the per-epoch
ratios, the thread count our estimator picks by itself ("ours picks": one BLAS thread below
``_nn.SINGLE_THREAD_PRODUCT`` multiply-adds in its largest product, as the MLP does, else the
default), and the mean test accuracy over the seeds. Then the first epoch of a fresh model of
ours runs under tracemalloc on the data and on the data repeated 4x: the peak is set by the
batch, not by the number of rows. A last table compares the work: one thread on each side, CPU
seconds per epoch.

Timings are noisy when other processes share the cores: the load average is printed before and
after; rerun on a quiet machine for numbers to quote.

Set-up (PyTorch only in this environment, never a dependency of the package; the CPU wheel)::

    python -m venv .venv-bench
    .venv-bench/bin/pip install torch==2.13.0 numpy scikit-learn scipy threadpoolctl -e .

Run::

    .venv-bench/bin/python bench/deep.py [--epochs 20] [--seeds 5] [a b c]
"""

import argparse
import contextlib
import os
import statistics
import time
import tracemalloc
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits

from mlx.estimators import CNNClassifier

N_MELS, N_FRAMES, N_CLASSES = 40, 32, 10
N_TRAIN, N_TEST, BATCH, THREADS = 2000, 1000, 64, 2

# --- the data -------------------------------------------------------------------------------

# Three steps between four notes (+1: up, -1: down, 0: repeat), in units of ``step`` bands: the
# ten multisets of three steps, so that local detectors of note-to-note steps pooled over time can
# tell the classes apart, while rising and falling contours hold the same notes.
CONTOURS = [
    (1, 1, 1),
    (-1, -1, -1),
    (0, 0, 0),
    (1, 1, -1),
    (1, -1, -1),
    (1, 1, 0),
    (1, 0, 0),
    (-1, -1, 0),
    (-1, 0, 0),
    (1, -1, 0),
]


def make_contours(n, seed, *, step=4, note_frames=6, loudness=4.0, noise=0.4):
    """Rows of (N_MELS, N_FRAMES) log-mel-like frames, band-major (as LogMelSpectrogram's):
    four notes of a class's contour, each a Gaussian bump over the bands for ``note_frames``
    frames, at a random base band and onset, in Gaussian noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, N_CLASSES, n)
    X = rng.normal(scale=noise, size=(n, N_MELS, N_FRAMES)).astype(np.float32)
    bands = np.arange(N_MELS)
    for row, label in zip(X, y, strict=True):
        pitches = np.cumsum((0, *CONTOURS[label])) * step
        base = rng.integers(1 - pitches.min(), N_MELS - 1 - pitches.max())
        onset = rng.integers(0, N_FRAMES - 4 * note_frames + 1)
        for k, pitch in enumerate(pitches):
            profile = np.exp(-0.5 * (bands - base - pitch) ** 2)
            frames = slice(onset + k * note_frames, onset + (k + 1) * note_frames)
            row[:, frames] += loudness * profile[:, None]
    return X.reshape(n, -1), y


# --- the cases ------------------------------------------------------------------------------


@dataclass
class Setup:
    """One comparison: our estimator and the PyTorch module of the same architecture.

    ``ours(seed)`` returns an unfitted mlx estimator reading rows of ``input_shape=(40, 32)``;
    ``torch_model()`` returns a module mapping ``torch_input(X)`` (a float32 array built from
    the rows) to logits of shape (n, 10).
    """

    name: str
    ours: object
    torch_model: object
    torch_input: object = field(default=lambda X: X.reshape(-1, N_MELS, N_FRAMES))


def case_a():
    def ours(seed):
        return CNNClassifier(
            (64, 64), kernel_size=5, pool="max", pool_size=2, global_pool="avg", **_common(seed)
        )

    def torch_model():
        nn = torch.nn
        return nn.Sequential(
            nn.Conv1d(N_MELS, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.Conv1d(64, 64, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool1d(2),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
            nn.Linear(64, N_CLASSES),
        )

    return Setup("(a) 1-D conv 64-64, k=5, max-pool", ours, torch_model)


def case_b():
    def ours(seed):
        return CNNClassifier(
            (16, 32), conv="2d", kernel_size=3, pool="max", pool_size=2, **_common(seed)
        )

    def torch_model():
        nn = torch.nn
        return nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(32, N_CLASSES),
        )

    return Setup(
        "(b) 2-D conv 16-32, 3x3, max-pool",
        ours,
        torch_model,
        lambda X: X.reshape(-1, 1, N_MELS, N_FRAMES),
    )


# ==== case (c): a GRU of 64 units, many-to-one =================================================
def case_c():
    """nn.GRU reads (n, frames, bands) batch-first; RNNClassifier reads the band-major rows
    with input_shape=(bands, frames) and transposes internally. Both: zero initial state, the
    last state of the one layer into a dense output layer."""
    from mlx.estimators import RNNClassifier

    def ours(seed):
        return RNNClassifier("gru", hidden_size=64, num_layers=1, **_common(seed))

    class GRUClassifier(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.gru = torch.nn.GRU(N_MELS, 64, batch_first=True)
            self.head = torch.nn.Linear(64, N_CLASSES)

        def forward(self, X):
            states, _ = self.gru(X)
            return self.head(states[:, -1])

    return Setup(
        "(c) GRU 64, many-to-one",
        ours,
        GRUClassifier,
        lambda X: X.reshape(-1, N_MELS, N_FRAMES).transpose(0, 2, 1),
    )


# ================================================================================================

CASES = {"a": case_a, "b": case_b, "c": case_c}


def _common(seed):
    """What every one of our estimators shares with the PyTorch side."""
    return dict(
        input_shape=(N_MELS, N_FRAMES),
        batch_size=BATCH,
        learning_rate_init=1e-3,
        alpha=0.0,
        dtype=np.float32,
        random_state=seed,
    )


# --- training both sides --------------------------------------------------------------------


class TorchTrainer:
    def __init__(self, setup, seed, X, y):
        torch.manual_seed(seed)
        self.model = setup.torch_model()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loss = torch.nn.CrossEntropyLoss()
        self.X = torch.from_numpy(np.ascontiguousarray(setup.torch_input(X)))
        self.y = torch.from_numpy(y)
        self.generator = torch.Generator().manual_seed(seed)
        self.setup = setup

    def epoch(self):
        self.model.train()
        order = torch.randperm(len(self.y), generator=self.generator)
        for start in range(0, len(order), BATCH):
            rows = order[start : start + BATCH]
            self.optimizer.zero_grad()
            self.loss(self.model(self.X[rows]), self.y[rows]).backward()
            self.optimizer.step()

    def score(self, X, y):
        self.model.eval()
        with torch.no_grad():
            logits = self.model(torch.from_numpy(np.ascontiguousarray(self.setup.torch_input(X))))
        return float((logits.argmax(1).numpy() == y).mean())


class OursTrainer:
    """Our estimator with BLAS held at ``blas_threads``: the estimator's own thread policy (which
    pins BLAS to one thread for small products) is switched off on this instance, so that both
    thread counts are measured whatever it would choose."""

    def __init__(self, setup, seed, X, y, blas_threads):
        self.model = setup.ours(seed)
        self.model._blas_threads = contextlib.nullcontext
        self.X, self.y, self.blas_threads = X, y, blas_threads

    def epoch(self):
        with threadpool_limits(limits=self.blas_threads, user_api="blas"):
            self.model.partial_fit(self.X, self.y, classes=np.arange(N_CLASSES))

    def policy(self):
        """The BLAS threads the estimator's own policy would use: 1 or the default."""
        pinned = type(self.model)._blas_threads(self.model)
        return "default" if isinstance(pinned, contextlib.nullcontext) else "1"

    def score(self, X, y):
        return float(self.model.score(X, y))


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


@dataclass
class Result:
    name: str
    seconds: dict  # side -> per-epoch times
    ratios: dict  # side -> per-epoch ratios against PyTorch
    accuracy: dict  # side -> per-seed test accuracies
    policy: str  # the BLAS threads our estimator picks by itself


def compare(setup, X, y, X_test, y_test, *, epochs, seeds):
    """Train PyTorch and ours (2 BLAS threads) for each seed, and ours with 1 BLAS thread for
    the first seed (its timing only), epoch by epoch in alternating order."""
    seconds = {side: [] for side in ("torch", "ours", "ours-1")}
    ratios = {side: [] for side in ("ours", "ours-1")}
    accuracy = {side: [] for side in ("torch", "ours")}
    for seed in range(seeds):
        trainers = {
            "torch": TorchTrainer(setup, seed, X, y),
            "ours": OursTrainer(setup, seed, X, y, THREADS),
        }
        if seed == 0:
            trainers["ours-1"] = OursTrainer(setup, seed, X, y, 1)
        sides = list(trainers)
        for epoch in range(epochs):
            order = sides if epoch % 2 == 0 else sides[::-1]
            times = {side: _timed(trainers[side].epoch) for side in order}
            if epoch == 0:
                continue  # warm-up: buffers, caches, thread pools
            for side in sides:
                seconds[side].append(times[side])
                if side != "torch":
                    ratios[side].append(times[side] / times["torch"])
        for side in accuracy:
            accuracy[side].append(trainers[side].score(X_test, y_test))
    return Result(setup.name, seconds, ratios, accuracy, trainers["ours"].policy())


def cpu_seconds(setup, X, y, *, epochs):
    """Median CPU seconds per epoch (``time.process_time``) with one thread on each side, and
    the median per-epoch ratio: the work each side does, which the machine's load changes far
    less than wall-clock times of threads that wait for each other."""
    torch.set_num_threads(1)
    try:
        trainers = {"torch": TorchTrainer(setup, 0, X, y), "ours": OursTrainer(setup, 0, X, y, 1)}
        seconds = {side: [] for side in trainers}
        for epoch in range(epochs):
            for side, trainer in trainers.items():
                start = time.process_time()
                trainer.epoch()
                if epoch:  # the first is warm-up
                    seconds[side].append(time.process_time() - start)
    finally:
        torch.set_num_threads(THREADS)
    ratio = statistics.median(o / t for o, t in zip(seconds["ours"], seconds["torch"], strict=True))
    return statistics.median(seconds["torch"]), statistics.median(seconds["ours"]), ratio


def peak_memory(setup, X, y):
    """Peak traced memory (bytes) of the first epoch of a fresh model of ours: the network, its
    optimiser and every per-batch buffer (X itself is float32 and C-ordered: not copied)."""
    model = setup.ours(0)
    tracemalloc.start()
    model.partial_fit(X, y, classes=np.arange(N_CLASSES))
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", default=list(CASES), help="a, b, c")
    parser.add_argument(
        "--epochs", type=int, default=20, help="epochs per seed (the first is warm-up)"
    )
    parser.add_argument("--seeds", type=int, default=5)
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # ConvergenceWarning of partial_fit-driven models, none here
    torch.set_num_threads(THREADS)
    X, y = make_contours(N_TRAIN, seed=0)
    X_test, y_test = make_contours(N_TEST, seed=1)
    blas = [(i["internal_api"], i["version"], i["num_threads"]) for i in threadpool_info()]
    print(f"torch {torch.__version__}, numpy {np.__version__}, BLAS {blas}")
    print(f"{os.cpu_count()} cores, load average before: {os.getloadavg()}")
    print(
        f"{N_TRAIN} training / {N_TEST} test examples of {N_MELS} bands x {N_FRAMES} frames, "
        f"{N_CLASSES} classes; batch {BATCH}, Adam 1e-3, float32, {args.epochs} epochs x "
        f"{args.seeds} seeds (first epoch of each is warm-up, not timed)\n"
    )
    print(
        "| case | PyTorch s/epoch | ours s/epoch (2 BLAS threads) | ratio | ours, 1 BLAS thread "
        "| ratio | ours picks | accuracy PyTorch | ours | delta |\n|" + "---|" * 10
    )
    memory, work = [], []
    for key in args.cases:
        setup = CASES[key]()
        if setup is None:
            print(f"| ({key}) not written yet | | | | | | | | | |")
            continue
        r = compare(setup, X, y, X_test, y_test, epochs=args.epochs, seeds=args.seeds)
        med = {side: statistics.median(times) for side, times in r.seconds.items()}
        ratio = {side: statistics.median(rs) for side, rs in r.ratios.items()}
        acc = {side: statistics.mean(a) for side, a in r.accuracy.items()}
        print(
            f"| {r.name} | {med['torch']:.3f} | {med['ours']:.3f} | {ratio['ours']:.2f} "
            f"| {med['ours-1']:.3f} | {ratio['ours-1']:.2f} | {r.policy} | {acc['torch']:.3f} "
            f"| {acc['ours']:.3f} | {acc['ours'] - acc['torch']:+.3f} |",
            flush=True,
        )
        work.append((setup, *cpu_seconds(setup, X, y, epochs=min(args.epochs, 6))))
        memory.append(
            (setup, peak_memory(setup, X, y), peak_memory(setup, np.tile(X, (4, 1)), np.tile(y, 4)))
        )
    print(f"\nload average after: {os.getloadavg()}")
    print("\nWork: one thread on each side, CPU seconds per epoch (process_time; seed 0):")
    print("| case | PyTorch | ours | ratio |\n|---|---|---|---|")
    for setup, theirs, ours, ratio in work:
        print(f"| {setup.name} | {theirs:.3f} | {ours:.3f} | {ratio:.2f} |")
    print(
        "\nPeak traced memory of a first epoch of ours (tracemalloc), data of 2000 and 8000 rows:"
    )
    for setup, small, large in memory:
        print(
            f"  {setup.name}: {small / 2**20:.1f} MB and {large / 2**20:.1f} MB "
            f"(the data: {X.nbytes / 2**20:.1f} MB and {4 * X.nbytes / 2**20:.1f} MB)"
        )


if __name__ == "__main__":
    main()
