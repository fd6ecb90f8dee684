"""The course's offline evaluation harness: a small Fashion-MNIST classifier and the scores built on it.

Introduced in {ref}`evaluation-chapter` (book/evaluation.md), which derives every measure and
shows it on real data, noise and a blurred mean image. Inception-based FID downloads its weights
at run time, which an offline grader cannot do; instead a small CNN is trained here on the
training split (once, then cached) and gives

* ``classifier_accuracy``: accuracy on real held-out images (is the judge any good?);
* ``sample_scores``: class ``coverage``, ``class_histogram`` and ``mean_confidence`` of
  generated samples, and ``fd``, the Frechet distance between Gaussian fits of the classifier's
  penultimate features of the samples and of real reference images, eq. {eq}`eval-frechet`;
* ``bits_per_dim``: the likelihood of a density model in bits per dimension of 8-bit data,
  eq. {eq}`eval-bpd`.

Confidence alone is useless (uniform noise can score above 0.9); read it with coverage and fd.
Frechet distances depend on the number of samples (their estimate is biased upwards for small
sets), so compare only scores computed with the same number of samples and the same reference.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from dgm.config import check_choice, get_device, get_profile, select
from dgm.data import DatasetName, load_dataset, make_loader, to_unit_range
from dgm.paths import default_cache_dir  # noqa: F401 - part of this module's interface

#: Bump when the classifier or its training changes: every cached classifier is then retrained.
#: (2: always trained on the CPU; a version-1 file may hold weights trained on a GPU.)
CODE_VERSION = 2
NUM_CLASSES = 10
#: A class is *covered* when at least this share of the samples is classified as it: a quarter
#: of the share (1/10) it would get if the samples were spread evenly over the classes.
COVERAGE_SHARE = 1 / (4 * NUM_CLASSES)

SampleScale = Literal["auto", "01", "pm1"]
DensityScale = Literal["01", "pm1", "bytes"]


@dataclass(frozen=True)
class ClassifierSettings:
    epochs: int  # passes over the training split; accuracy saturates after a few on 4,000 images
    batch_size: int = 64  # small batches give many updates per epoch on a small data set
    lr: float = 2e-3  # Adam step size; stable for this small CNN without a schedule
    weight_decay: float = 1e-4  # a little L2 keeps the features from overfitting the train split
    width: int = 32  # channels of the first conv layer (the second has twice as many)
    feature_dim: int = 128  # size of the penultimate features used by the Frechet distance
    seed: int = 0  # initialisation and shuffling, so every machine trains the same classifier
    cpu_threads: int = 1  # at batch 64 a second thread gains little; on a busy machine it costs 10x


SETTINGS = {
    "smoke": ClassifierSettings(epochs=3),  # about 7 s of CPU time; held-out accuracy 0.83
    "cpu": ClassifierSettings(epochs=8),  # about 17 s of CPU time on 4,000 images; accuracy 0.86
    # all 60,000 images on the CPU (see get_classifier): a few threads keep it to minutes, once
    "full": ClassifierSettings(epochs=10, cpu_threads=4),
}

#: How many classifiers this process has trained; tests use it to check that a cache hit does not.
TRAINING_RUNS = 0


class Classifier(nn.Module):
    """A small CNN for (B, 1, 28, 28) images in [0, 1]: two conv blocks, a feature layer, logits."""

    def __init__(self, width: int = 32, feature_dim: int = 128, num_classes: int = NUM_CLASSES):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, w, 14, 14)
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # (B, 2w, 7, 7)
            nn.Flatten(),
            nn.Linear(2 * width * 7 * 7, feature_dim), nn.ReLU(),  # (B, feature_dim)
        )
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(feature_dim, num_classes))

    def features(self, x: Tensor) -> Tensor:
        """Penultimate features ``(B, feature_dim)``: what the Frechet distance compares."""
        return self.body(x - 0.5)

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(B, num_classes)``."""
        return self.head(self.features(x))


# ----------------------------------------------------------------------------- training and cache

def _data_fingerprint(data: TensorDataset) -> str:
    """A short hash of the training images and labels (as 8-bit pixels), so other data retrains."""
    images, labels = data.tensors
    h = hashlib.sha256()
    h.update((images * 255).round().to(torch.uint8).numpy().tobytes())
    h.update(labels.numpy().astype(np.int64).tobytes())
    return h.hexdigest()[:16]


def cache_key(dataset_name: str, n_train: int, settings: ClassifierSettings,
              fingerprint: str = "") -> str:
    """Hash of everything the trained weights depend on: data set, its size and content, settings,
    and :data:`CODE_VERSION`."""
    blob = json.dumps({"dataset": dataset_name, "n_train": n_train, "data": fingerprint,
                       "settings": asdict(settings), "code_version": CODE_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _new_classifier(settings: ClassifierSettings) -> Classifier:
    """A freshly initialised classifier, seeded by ``settings.seed`` without touching the global
    random state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(settings.seed)
        return Classifier(settings.width, settings.feature_dim)


def train_classifier(train: TensorDataset, settings: ClassifierSettings,
                     device: torch.device | None = None) -> Classifier:
    """Train a :class:`Classifier` with Adam and cross-entropy; deterministic for a given seed.

    The global random state of the caller is left untouched (``torch.random.fork_rng``), so a
    chapter draws the same random numbers whether the classifier came from the cache or not.
    Training runs on ``settings.cpu_threads`` CPU threads; the caller's setting is restored.
    """
    global TRAINING_RUNS
    device = device or torch.device("cpu")
    threads = torch.get_num_threads()
    torch.set_num_threads(min(threads, settings.cpu_threads))
    try:
        clf = _train(train, settings, device)
    finally:
        torch.set_num_threads(threads)
    TRAINING_RUNS += 1
    return clf.eval()


def _train(train: TensorDataset, settings: ClassifierSettings, device: torch.device) -> Classifier:
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(settings.seed)
        clf = _new_classifier(settings).to(device)
        opt = torch.optim.Adam(clf.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
        loader = make_loader(train, batch_size=settings.batch_size, shuffle=True, seed=settings.seed)
        clf.train()
        for _ in range(settings.epochs):
            for x, y in loader:
                loss = F.cross_entropy(clf(x.to(device)), y.to(device))
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return clf


#: Classifiers this process has loaded or trained, by cache path and device. The grader loads
#: its copy before any student kernel runs, so a cache file written later cannot change it.
_LOADED: dict[tuple[str, str], "Classifier"] = {}


def get_classifier(
    dataset_name: DatasetName = "fashion_mnist",
    profile: str | None = None,
    device: str | torch.device | None = None,
    cache_dir: str | Path | None = None,
    settings: ClassifierSettings | None = None,
) -> Classifier:
    """The evaluation classifier of ``dataset_name``, trained on its whole training split.

    Weights are cached in ``cache_dir`` (default :func:`default_cache_dir`) as
    ``classifier-<data set>-<hash>.pt``, the hash being :func:`cache_key`; a different data root,
    data size or setting therefore trains a new one. A cache file that cannot be read is replaced
    (with a warning). ``settings`` overrides the profile's row of :data:`SETTINGS`.

    The classifier is always *trained on the CPU* and then moved to ``device``: it is the
    reference every FD_clf is measured with, so its weights must not depend on the machine
    (a GPU's convolutions round differently, and a classifier trained there gave other
    distances and failed bands calibrated on the CPU).
    """
    check_choice(dataset_name, get_args(DatasetName), "data set")
    settings = settings or select(SETTINGS, profile)
    device = device if isinstance(device, torch.device) else get_device(device)
    train = load_dataset(dataset_name, split="train", scale="01")
    key = cache_key(dataset_name, len(train), settings, _data_fingerprint(train))
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    path = folder / f"classifier-{dataset_name}-{key}.pt"
    loaded = _LOADED.get((str(path), str(device)))
    if loaded is not None:  # this process's own copy: never re-read from disk
        return loaded

    clf = _new_classifier(settings)
    if path.exists():
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
            if payload.get("key") != key:
                raise ValueError(f"it was saved for key {payload.get('key')!r}, not {key!r}")
            clf.load_state_dict(payload["state_dict"])
            clf = clf.to(device).eval()
            _LOADED[(str(path), str(device))] = clf
            return clf
        except Exception as exc:  # truncated, corrupt or foreign file: train again
            warnings.warn(f"could not load the cached classifier {path} ({type(exc).__name__}: "
                          f"{exc}); training a new one", RuntimeWarning, stacklevel=2)
    start = time.perf_counter()
    clf = train_classifier(train, settings, torch.device("cpu"))
    seconds = time.perf_counter() - start
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")  # write, then rename: parallel runs stay safe
    torch.save({"key": key, "state_dict": clf.state_dict(), "train_seconds": seconds}, tmp)
    tmp.replace(path)
    clf = clf.to(device)
    _LOADED[(str(path), str(device))] = clf
    return clf


# ----------------------------------------------------------------------------- inputs

def as_unit_images(samples: Tensor, scale: SampleScale = "auto") -> Tensor:
    """Check that ``samples`` is ``(N, 1, 28, 28)`` and return it in [0, 1] as float32.

    ``scale="auto"`` reads the samples as [-1, 1] data when their minimum is below -0.5 and as
    [0, 1] data otherwise (a [0, 1] model overshooting slightly below 0 stays [0, 1]); [-1, 1]
    data is mapped by (x + 1) / 2. Either way the result is clipped to [0, 1]. Values beyond
    [-2, 2] (e.g. 0-255 pixels) and non-finite values raise ``ValueError``.
    """
    check_choice(scale, get_args(SampleScale), "scale")
    if not isinstance(samples, Tensor):
        samples = torch.as_tensor(np.asarray(samples))
    if samples.ndim != 4 or tuple(samples.shape[1:]) != (1, 28, 28) or len(samples) == 0:
        raise ValueError(f"samples must have shape (N, 1, 28, 28) with N >= 1, got "
                         f"{tuple(samples.shape)}; add the channel axis with x.unsqueeze(1) "
                         "if it is missing")
    x = samples.detach().float().cpu()
    if not torch.isfinite(x).all():
        raise ValueError("samples contain NaN or infinite values")
    lo, hi = x.min().item(), x.max().item()
    if lo < -2 or hi > 2:
        raise ValueError(f"samples range over [{lo:.3g}, {hi:.3g}]; expected [0, 1] or [-1, 1] "
                         "(divide 0-255 pixels by 255)")
    return to_unit_range(x, scale)


@torch.no_grad()
def _forward_batches(clf: Classifier, images: Tensor, batch_size: int = 500):
    device = next(clf.parameters()).device
    clf.eval()
    feats, logits = [], []
    for start in range(0, len(images), batch_size):
        f = clf.features(images[start:start + batch_size].to(device))
        feats.append(f.cpu())
        logits.append(clf.head(f).cpu())
    return torch.cat(feats), torch.cat(logits)


def extract_features(clf: Classifier, images: Tensor) -> np.ndarray:
    """Penultimate features of ``images`` (N, 1, 28, 28) in [0, 1], as float64 ``(N, feature_dim)``."""
    return _forward_batches(clf, images)[0].double().numpy()


def _images_of(data: Tensor | TensorDataset) -> Tensor:
    return data.tensors[0] if isinstance(data, TensorDataset) else data


# ----------------------------------------------------------------------------- the measures

def classifier_accuracy(clf: Classifier, dataset: TensorDataset) -> float:
    """Fraction of ``dataset`` (images in [0, 1] or [-1, 1], labels) whose argmax class is right."""
    images, labels = dataset.tensors
    _, logits = _forward_batches(clf, as_unit_images(images))
    return (logits.argmax(1) == labels.cpu()).double().mean().item()


def feature_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(d,)`` and covariance ``(d, d)`` (unbiased, N - 1) of features ``(N, d)``, float64."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or len(features) < 2:
        raise ValueError(f"need features of shape (N, d) with N >= 2, got {features.shape}")
    return features.mean(0), np.cov(features, rowvar=False).reshape(features.shape[1], -1)


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix, by eigen-decomposition."""
    vals, vecs = np.linalg.eigh((cov + cov.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """Frechet (2-Wasserstein squared) distance between N(mu1, cov1) and N(mu2, cov2), eq. {eq}`eval-frechet`.

    ||mu1 - mu2||^2 + tr(cov1 + cov2 - 2 (cov1 cov2)^{1/2}). The trace of the square root is
    computed as sum_i sqrt(lambda_i) over the eigenvalues of cov1^{1/2} cov2 cov1^{1/2}, which is
    similar to cov1 cov2 but symmetric positive semi-definite, so it stays real and stable even
    for singular covariances (eq. {eq}`eval-trace-sqrt`). Everything in float64.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    cov1, cov2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    if mu1.shape != mu2.shape or cov1.shape != cov2.shape or cov1.shape != (len(mu1), len(mu1)):
        raise ValueError(f"shapes do not match: mu {mu1.shape}, {mu2.shape}; cov {cov1.shape}, "
                         f"{cov2.shape}")
    root1 = _psd_sqrt(cov1)
    middle = root1 @ cov2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = np.sqrt(np.clip(eig, 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(cov1) + np.trace(cov2) - 2 * trace_sqrt)


def sample_scores(clf: Classifier, samples: Tensor, reference: Tensor | TensorDataset | None = None,
                  scale: SampleScale = "auto") -> dict:
    """Scores of ``samples`` (N, 1, 28, 28) under the classifier ``clf``.

    Returns a dict with ``n`` (number of samples); ``class_histogram``, the share of samples
    whose argmax class is each of the 10 classes; ``coverage``, the fraction of classes whose
    share is at least :data:`COVERAGE_SHARE` (1/40); ``mean_confidence``, the mean over samples
    of the largest softmax probability; and ``fd``, the Frechet distance between Gaussian fits
    of the features of the samples and of ``reference`` (real images; ``None`` when no
    reference is given). Samples and reference go through :func:`as_unit_images`.
    """
    x = as_unit_images(samples, scale)
    if len(x) < 2:
        raise ValueError("need at least 2 samples to fit a covariance")
    feats, logits = _forward_batches(clf, x)
    probs = logits.double().softmax(1)
    counts = torch.bincount(probs.argmax(1), minlength=NUM_CLASSES).double()
    histogram = (counts / len(x)).tolist()
    scores = {
        "n": len(x),
        "class_histogram": histogram,
        "coverage": float(np.mean([share >= COVERAGE_SHARE - 1e-12 for share in histogram])),
        "mean_confidence": probs.max(1).values.mean().item(),
        "fd": None,
    }
    if reference is not None:
        ref = extract_features(clf, as_unit_images(_images_of(reference)))
        scores["fd"] = frechet_distance(*feature_stats(feats.double().numpy()), *feature_stats(ref))
    return scores


def evaluate_samples(samples: Tensor, profile: str | None = None,
                     dataset_name: DatasetName = "fashion_mnist", scale: SampleScale = "auto",
                     device: str | torch.device | None = None,
                     cache_dir: str | Path | None = None) -> dict:
    """:func:`sample_scores` of ``samples`` against the real held-out (test) split as reference.

    ``samples``: ``(N, 1, 28, 28)`` in [0, 1] or [-1, 1] (see :func:`as_unit_images`); anything
    else raises ``ValueError``. The classifier comes from :func:`get_classifier` (cached).
    """
    x = as_unit_images(samples, scale)
    clf = get_classifier(dataset_name, profile=get_profile(profile), device=device,
                         cache_dir=cache_dir)
    reference = load_dataset(dataset_name, split="test", scale="01")
    return sample_scores(clf, x, reference, scale="01")


def noise_images(n: int, seed: int = 0) -> Tensor:
    """``n`` images of independent uniform [0, 1] pixels: the worst baseline, ``(n, 1, 28, 28)``."""
    return torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(seed))


def blurred_mean_images(images: Tensor, n: int, sigma: float = 1.0) -> Tensor:
    """``n`` copies of the mean of ``images`` blurred by a Gaussian of std ``sigma`` pixels.

    The baseline of a model that learned only the average image (a collapsed, blurry
    generator): every copy is the same, so its feature covariance is zero.
    """
    from torchvision.transforms.functional import gaussian_blur

    mean = as_unit_images(images).mean(0, keepdim=True)  # (1, 1, 28, 28)
    kernel = 2 * math.ceil(3 * sigma) + 1
    return gaussian_blur(mean, [kernel, kernel], [sigma, sigma]).expand(n, -1, -1, -1).clone()


def bits_per_dim(nll_nats_per_image, dims: int = 784, scale: DensityScale = "01"):
    """Negative log-likelihood per image (nats) -> bits per dimension of 8-bit data, eq. {eq}`eval-bpd`.

    ``scale`` says over which cube the model's density is defined: ``"01"`` for data scaled to
    [0, 1] (x = k / 256 plus dequantisation noise u / 256, u ~ U[0, 1)), ``"pm1"`` for [-1, 1]
    (x = 2 (k + u) / 256 - 1), ``"bytes"`` for the raw [0, 256) scale. The density over [0, 256)^D
    is the scaled density divided by the Jacobian (256 or 128 per dimension), so
    bpd = (nll + D log c) / (D log 2), with c = 256, 128 or 1; for [0, 1] this is nll / (D log 2) + 8.
    Works on floats and tensors alike.
    """
    offsets = {"01": math.log(256), "pm1": math.log(128), "bytes": 0.0}
    check_choice(scale, tuple(offsets), "scale")
    if dims <= 0:
        raise ValueError(f"dims must be positive, got {dims}")
    return (nll_nats_per_image + dims * offsets[scale]) / (dims * math.log(2))
