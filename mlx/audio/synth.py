"""Synthetic sounds, numpy only: instrument notes, and melodies whose class is their contour."""

from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.utils import check_random_state

INSTRUMENTS = ("flute", "clarinet", "violin", "piano", "drum", "bell")

# Melodic contours: the scale step (0 lowest .. 4 highest) played at each of the five positions.
# Every contour plays each step once, so all classes share one multiset of notes.
CONTOURS = MappingProxyType(
    {
        "rising": (0, 1, 2, 3, 4),
        "falling": (4, 3, 2, 1, 0),
        "arch": (0, 2, 4, 3, 1),
        "valley": (4, 2, 0, 1, 3),
        "zigzag": (0, 3, 1, 4, 2),
    }
)
_CONTOUR_STEP = 4  # semitones between adjacent steps of the scale (major thirds)
# Melody centres of the recordings (Hz, log-uniform): one register for every instrument, so the
# notes' bands overlap from recording to recording and a model learns the moves, not the bands.
_CONTOUR_REGISTER = (300.0, 600.0)
_PITCHED = ("flute", "clarinet", "violin", "piano", "bell")
_RELEASE = 0.01  # s, fade at the end of each note (no click)

# Partial frequencies of a struck bell relative to its nominal (hum, prime, tierce, quint, ...)
# and of a circular membrane's first modes: the inharmonic spectra that make them recognisable.
_BELL_RATIOS = np.array([0.5, 1.0, 1.19, 1.5, 2.0, 2.51, 2.66, 3.01, 4.1, 5.4])
_MEMBRANE_RATIOS = np.array([1.0, 1.59, 2.14, 2.3, 2.65, 2.92, 3.16, 3.5])
_N_HARMONICS = 20


@dataclass
class _Voice:
    """Synthesis parameters of a batch of clips; arrays have one row per clip."""

    f0: np.ndarray  # (n, 1) Hz
    ratios: np.ndarray  # (n, K) partial frequency / f0
    amps: np.ndarray  # (n, K)
    decays: np.ndarray  # (n, K) 1/s; 0 sustains
    attack: np.ndarray  # (n, 1) s
    noise_level: np.ndarray  # (n, 1) breath, bow or strike noise relative to the partials
    noise_band: np.ndarray  # (n, 2) Hz, pass band of that noise
    noise_decay: np.ndarray  # (n, 1) 1/s; 0 sustains (breath, bow), large for strikes
    vibrato_depth: np.ndarray | float = 0.0  # (n, 1) relative frequency deviation
    vibrato_rate: np.ndarray | float = 1.0  # (n, 1) Hz
    glide: np.ndarray | float = 0.0  # (n, 1) relative pitch drop at the onset (membranes)
    formants: tuple = ()  # ((n, 1) centre Hz, gain) body resonances, fixed whatever the pitch


def _per_recording(rng, recording, low, high, log=False, shape=()):
    """Draw one value per recording (uniform, or log-uniform) and spread it to its clips."""
    n_recordings = recording.max() + 1
    if log:
        values = np.exp(rng.uniform(np.log(low), np.log(high), (n_recordings, *shape)))
    else:
        values = rng.uniform(low, high, (n_recordings, *shape))
    values = values[recording]
    return values if shape else values[:, None]


def _voice(name, rng, recording):
    """Parameters of the clips of one instrument; the clips of a recording share them."""
    n = recording.shape[0]
    k = np.arange(1, _N_HARMONICS + 1, dtype=float)
    harmonics = np.broadcast_to(k, (n, _N_HARMONICS))
    sustained = np.zeros((n, _N_HARMONICS))

    def draw(low, high, log=False, shape=()):
        return _per_recording(rng, recording, low, high, log, shape)

    def band(low, high):
        return np.column_stack([draw(*low), draw(*high)])

    # Each recording gets its own timbre: partial amplitudes scattered around the instrument's.
    jitter = np.exp(draw(-0.15, 0.15, shape=(_N_HARMONICS,)))
    if name == "flute":
        return _Voice(
            f0=draw(260, 1400, log=True),
            ratios=harmonics,
            amps=jitter * np.where(k == 1, 1.0, 0.35 * k**-2.5),
            decays=sustained,
            attack=draw(0.05, 0.15),
            vibrato_depth=draw(0.003, 0.01),
            vibrato_rate=draw(4, 6),
            noise_level=draw(0.2, 0.4),
            noise_band=band((1000, 2000), (5000, 7500)),
            noise_decay=np.zeros((n, 1)),
        )
    if name == "clarinet":
        return _Voice(
            f0=draw(140, 900, log=True),
            ratios=harmonics,
            amps=jitter * np.where(k % 2 == 1, 1 / k, draw(0.0, 0.08) / k),
            decays=sustained,
            attack=draw(0.02, 0.06),
            vibrato_depth=draw(0.0, 0.002),
            vibrato_rate=draw(4, 6),
            noise_level=draw(0.01, 0.05),
            noise_band=band((300, 800), (2000, 4000)),
            noise_decay=np.zeros((n, 1)),
            formants=((draw(1100, 1600), 3.0),),
        )
    if name == "violin":
        return _Voice(
            f0=draw(190, 1300, log=True),
            ratios=harmonics,
            amps=jitter / k,
            decays=sustained,
            attack=draw(0.04, 0.12),
            vibrato_depth=draw(0.005, 0.015),
            vibrato_rate=draw(5, 7),
            noise_level=draw(0.05, 0.12),
            noise_band=band((2000, 3000), (6000, 7500)),
            noise_decay=np.zeros((n, 1)),
            formants=((draw(400, 500), 2.0), (draw(2500, 3200), 4.0)),
        )
    if name == "piano":
        stiffness = draw(1e-4, 8e-4, log=True)
        return _Voice(
            f0=draw(55, 1000, log=True),
            ratios=k * np.sqrt(1 + stiffness * k**2),
            amps=jitter * k**-1.3,
            decays=draw(4.0, 10.0) * (1 + 0.4 * k),
            attack=draw(0.002, 0.006),
            noise_level=draw(0.05, 0.15),
            noise_band=band((100, 400), (2000, 4000)),
            noise_decay=draw(60, 150),
        )
    if name == "bell":
        n_partials = _BELL_RATIOS.shape[0]
        ratios = _BELL_RATIOS * np.exp(draw(-0.02, 0.02, shape=(n_partials,)))
        return _Voice(
            f0=draw(150, 800, log=True),
            ratios=ratios,
            amps=jitter[:, :n_partials] * draw(0.3, 1.0, shape=(n_partials,)),
            decays=draw(1.0, 2.0) * ratios**1.5,
            attack=draw(0.001, 0.003),
            noise_level=draw(0.1, 0.3),
            noise_band=band((1000, 3000), (6000, 7500)),
            noise_decay=draw(80, 200),
        )
    if name == "drum":
        n_modes = _MEMBRANE_RATIOS.shape[0]
        return _Voice(
            f0=draw(50, 250, log=True),
            ratios=np.broadcast_to(_MEMBRANE_RATIOS, (n, n_modes)),
            amps=jitter[:, :n_modes] * _MEMBRANE_RATIOS**-1.5,
            decays=draw(8, 25) * _MEMBRANE_RATIOS**0.5,
            attack=draw(0.001, 0.003),
            glide=draw(0.1, 0.5),
            noise_level=draw(0.5, 1.5),
            noise_band=band((200, 500), (4000, 7500)),
            noise_decay=draw(15, 50),
        )
    raise ValueError(f"Unknown instrument {name!r}; expected one of {INSTRUMENTS}.")


def _formant_gain(frequency, formants):
    """1 plus a bump of the given gain around each resonance, one octave wide (log scale)."""
    gain = np.ones_like(frequency)
    for centre, height in formants:
        gain += height * np.exp(-0.5 * (np.log2(frequency / centre) / 0.5) ** 2)
    return gain


def _band_noise(rng, shape, band, sr):
    """White noise band-passed per clip in the frequency domain (no per-sample recursion)."""
    spectrum = np.fft.rfft(rng.standard_normal(shape), axis=1)
    freqs = np.fft.rfftfreq(shape[1], d=1 / sr)
    spectrum *= (freqs >= band[:, :1]) & (freqs <= band[:, 1:])
    noise = np.fft.irfft(spectrum, n=shape[1], axis=1)
    return noise / (noise.std(axis=1, keepdims=True) + 1e-12)


def _render(voice, rng, t, onset, sr):
    """Sum of partials with vibrato, pitch glide and attack/decay envelopes, plus band noise."""
    n = voice.f0.shape[0]
    local_t = np.maximum(t - onset, 0.0)  # (n, n_samples): time since the note's onset
    started = t >= onset
    vibrato_phase = rng.uniform(0, 2 * np.pi, (n, 1))
    rate = np.maximum(voice.vibrato_rate, 1e-9)
    glide_tau = 0.04
    # Phase of a partial at ratio r: 2 pi r f0 times this warped time, the integral of the
    # instantaneous frequency f0 (1 + glide e^{-t/tau} + depth sin(2 pi rate t + phi)).
    warped_t = (
        local_t
        + voice.glide * glide_tau * (1 - np.exp(-local_t / glide_tau))
        - voice.vibrato_depth
        / (2 * np.pi * rate)
        * (np.cos(2 * np.pi * rate * local_t + vibrato_phase) - np.cos(vibrato_phase))
    )
    attack = np.minimum(local_t / voice.attack, 1.0)
    top_frequency = voice.f0 * voice.ratios * (1 + voice.glide + voice.vibrato_depth)
    # No partial above Nyquist (no aliasing); body resonances colour the partials.
    audible = voice.amps * (top_frequency < 0.45 * sr)
    audible = audible * _formant_gain(voice.f0 * voice.ratios, voice.formants)
    partial_phase = rng.uniform(0, 2 * np.pi, voice.ratios.shape)
    # float32 phases halve the cost of the loop (which visits only the clips where a partial is
    # audible); their rounding, ~6e-8 of the phase, is 0.01 rad for a 7 kHz partial after 2 s.
    warped_t = warped_t.astype(np.float32)
    tone = np.zeros_like(warped_t)
    angular = (2 * np.pi * voice.f0 * voice.ratios).astype(np.float32)
    for j in range(voice.ratios.shape[1]):
        rows = np.flatnonzero(audible[:, j])
        if rows.size == 0:
            continue
        partial = angular[rows, j : j + 1] * warped_t[rows]
        partial += partial_phase[rows, j : j + 1].astype(np.float32)
        np.sin(partial, out=partial)
        partial *= audible[rows, j : j + 1].astype(np.float32)
        if np.any(voice.decays[rows, j]):
            partial *= np.exp(-voice.decays[rows, j : j + 1] * local_t[rows]).astype(np.float32)
        tone[rows] += partial
    tone *= attack
    tone /= np.sqrt(np.mean(tone**2, axis=1, keepdims=True)) + 1e-12
    burst = _band_noise(rng, local_t.shape, voice.noise_band, sr)
    burst *= voice.noise_level * np.exp(-voice.noise_decay * local_t) * started
    return tone + burst.astype(np.float32)


def _check_generator_args(n_per_class, clips_per_recording, sr, duration, noise):
    """Check the arguments the generators share; return the samples per clip."""
    for value, name in ((n_per_class, "n_per_class"), (clips_per_recording, "clips_per_recording")):
        if not isinstance(value, Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {name}={value!r}.")
    if not isinstance(sr, Integral) or sr < 1000:
        raise ValueError(f"sr must be an integer >= 1000 Hz, got sr={sr!r}.")
    n_samples = round(sr * duration)
    if n_samples < 1:
        raise ValueError(f"duration={duration!r} s at sr={sr} gives no samples.")
    if not noise >= 0:
        raise ValueError(f"noise must be >= 0, got noise={noise!r}.")
    return n_samples


def _add_noise_and_level(signal, rng, noise):
    """White noise at ``noise`` times each clip's RMS, then a random peak level in [0.1, 0.9].

    Works in place on ``signal`` (a fresh float32 array of the caller's).
    """
    signal += (
        noise
        * np.sqrt(np.mean(signal**2, axis=1, keepdims=True))
        * rng.standard_normal(signal.shape)
    )
    peak = rng.uniform(0.1, 0.9, (signal.shape[0], 1))
    signal *= peak / (np.abs(signal).max(axis=1, keepdims=True) + 1e-12)
    return signal.astype(np.float32)


def _shuffled(rng, shuffle, *arrays):
    if not shuffle:
        return arrays
    order = rng.permutation(arrays[0].shape[0])
    return tuple(a[order] for a in arrays)


def make_instrument_sounds(
    n_per_class: int = 100,
    *,
    sr: int = 16000,
    duration: float = 0.5,
    noise: float = 0.05,
    clips_per_recording: int = 5,
    shuffle: bool = True,
    random_state: int | np.random.RandomState | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.str_], NDArray[np.int64]]:
    """Synthetic notes of six instruments that differ the way real ones do.

    Each class has its own spectrum and envelope: flute (nearly sinusoidal, breathy, slow
    attack, vibrato), clarinet (odd harmonics), violin (all harmonics falling as 1/k, strong
    vibrato, bow noise), piano (hammer attack, decay faster for higher partials, stretched
    partials from string stiffness), drum (membrane modes, pitch drop, noise burst) and bell
    (inharmonic bell partials, long decay). Pitch ranges overlap, so pitch alone does not tell
    the instruments apart.

    Clips come in "recordings" of ``clips_per_recording`` notes that share one instrument
    timbre (partial amplitudes, vibrato, attack, noise colour) and a base pitch, each note
    within a third of it: a grouped split by ``groups`` keeps a recording's notes on one side,
    as a real data set cut from recordings needs. Loudness and onset time vary per clip.

    Parameters
    ----------
    n_per_class : int, default=100
        Clips per instrument.
    sr : int, default=16000
        Sample rate in Hz.
    duration : float, default=0.5
        Clip length in seconds.
    noise : float, default=0.05
        Standard deviation of added white noise relative to the RMS of each clip.
    clips_per_recording : int, default=5
        Notes per recording (the last recording of a class may have fewer).
    shuffle : bool, default=True
        Shuffle the clips; otherwise they come class by class, recording by recording.
    random_state : int, RandomState instance or None, default=None
        Seed of every random choice.

    Returns
    -------
    clips : ndarray of shape (6 * n_per_class, round(sr * duration)), float32
        Peak amplitude between 0.1 and 0.9.
    labels : ndarray of shape (6 * n_per_class,), str
        Instrument names (``mlx.audio.INSTRUMENTS``).
    groups : ndarray of shape (6 * n_per_class,), int
        Recording ids, unique across instruments.

    Examples
    --------
    >>> import numpy as np
    >>> from mlx.audio import make_instrument_sounds
    >>> clips, labels, groups = make_instrument_sounds(10, random_state=0)
    >>> clips.shape, clips.dtype, np.unique(labels)[:3].tolist(), np.unique(groups).size
    ((60, 8000), dtype('float32'), ['bell', 'clarinet', 'drum'], 12)
    """
    n_samples = _check_generator_args(n_per_class, clips_per_recording, sr, duration, noise)
    rng = check_random_state(random_state)

    t = np.arange(n_samples) / sr
    recording = np.arange(n_per_class) // clips_per_recording
    n_recordings = int(recording[-1]) + 1
    clip_parts, label_parts, group_parts = [], [], []
    for class_index, name in enumerate(INSTRUMENTS):
        voice = _voice(name, rng, recording)
        # Notes of a recording: up to 4 semitones either side of its base pitch.
        voice.f0 = voice.f0 * 2.0 ** (rng.randint(-4, 5, (n_per_class, 1)) / 12)
        onset = rng.uniform(0.0, min(0.05, duration / 4), (n_per_class, 1))
        signal = _render(voice, rng, t, onset, sr)
        clip_parts.append(_add_noise_and_level(signal, rng, noise))
        label_parts.append(np.full(n_per_class, name))
        group_parts.append(class_index * n_recordings + recording)
    clips, labels = np.concatenate(clip_parts), np.concatenate(label_parts)
    return _shuffled(rng, shuffle, clips, labels, np.concatenate(group_parts))


def make_contour_sounds(
    n_per_class: int = 100,
    *,
    sr: int = 16000,
    duration: float = 1.0,
    noise: float = 0.05,
    clips_per_recording: int = 5,
    instruments: Sequence[str] = _PITCHED,
    shuffle: bool = True,
    random_state: int | np.random.RandomState | None = None,
    return_notes: bool = False,
) -> tuple[NDArray[Any], ...]:
    """Five-note melodies whose class is the order of the notes, not the notes themselves.

    Each clip plays the five notes of a scale of major thirds (16 semitones from lowest to
    highest) once each, in the order of its class's contour (``mlx.audio.CONTOURS``): rising,
    falling, arch (up to the top, then down), valley (down to the bottom, then up) and zigzag
    (alternating up and down). The notes are played by the synthetic voices of
    :func:`make_instrument_sounds`, each recording by an instrument drawn at random, so timbre
    says nothing about the class.

    Every clip holds the same multiset of notes, each note in a slot of the same length, so what
    is pooled over time (the mean, spread, minimum, maximum of each log-mel band, as
    :class:`LogMelFeatures` computes) is the same for every class up to the few frames where one
    note hands over to the next. A model on such statistics stays near chance (1 in 5); only a
    model that sees the order of the frames (a convolutional or recurrent network on
    :class:`LogMelSpectrogram` frames) can learn the task. Small random changes keep it from
    being trivial: the melody's start, tempo and transposition vary per clip, and each note's
    onset, length, tuning and loudness vary a little, independently of its position (so they
    carry no class information either).

    Clips come in "recordings" of ``clips_per_recording`` melodies of one contour, played by one
    instrument with one timbre around one centre pitch: a grouped split by ``groups`` keeps a
    recording on one side, as for :func:`make_instrument_sounds`.

    Parameters
    ----------
    n_per_class : int, default=100
        Clips per contour.
    sr : int, default=16000
        Sample rate in Hz.
    duration : float, default=1.0
        Clip length in seconds, at least 0.2; the melody fills 80-95% of it.
    noise : float, default=0.05
        Standard deviation of added white noise relative to the RMS of each clip.
    clips_per_recording : int, default=5
        Melodies per recording (the last recording of a contour may have fewer).
    instruments : tuple of str, default=("flute", "clarinet", "violin", "piano", "bell")
        Instruments the recordings are drawn from, among ``mlx.audio.INSTRUMENTS`` (the drum's
        pitch glide and noise burst make a poor melody instrument, so it is left out by default).
    shuffle : bool, default=True
        Shuffle the clips; otherwise they come contour by contour, recording by recording.
    random_state : int, RandomState instance or None, default=None
        Seed of every random choice.
    return_notes : bool, default=False
        Also return the fundamental frequency of each note, in the order played.

    Returns
    -------
    clips : ndarray of shape (5 * n_per_class, round(sr * duration)), float32
        Peak amplitude between 0.1 and 0.9.
    labels : ndarray of shape (5 * n_per_class,), str
        Contour names (the keys of ``mlx.audio.CONTOURS``).
    groups : ndarray of shape (5 * n_per_class,), int
        Recording ids, unique across contours.
    notes : ndarray of shape (5 * n_per_class, 5), float
        Only if ``return_notes``: each note's fundamental in Hz, in the order played.

    See Also
    --------
    make_instrument_sounds : single notes whose class is the instrument.
    LogMelSpectrogram : frames in time order, the features this task needs.

    Notes
    -----
    Note :math:`k = 0, \\dots, 4` of the scale has the fundamental
    :math:`f_k = c \\, 2^{(4k - 8 + \\tau + \\epsilon_k)/12}`, with :math:`c` the recording's
    centre pitch (log-uniform in 300-600 Hz, whatever the instrument), :math:`\\tau` a
    transposition of the clip (uniform in +-1 semitone) and :math:`\\epsilon_k` a detuning of
    the note (uniform in +-0.25 semitone); the notes lie between about 180 Hz and 1 kHz. As
    the centres span an octave, a note's pitch does not tell its rank in the scale: a model
    must follow the moves from note to note.

    The melody fills a fraction (uniform in 0.8-0.95) of the clip from a random start; it is
    cut into five equal slots, and each note starts up to 10% of a slot late and sounds for
    75-90% of it, then fades out in 10 ms, so notes never overlap.

    Frames of 64 ms (``n_fft=1024`` at 16 kHz) resolve the fundamentals a major third apart;
    a hop of 32 ms gives each note about five frames in a one-second clip.

    Examples
    --------
    >>> import numpy as np
    >>> from mlx.audio import make_contour_sounds
    >>> clips, labels, groups, notes = make_contour_sounds(10, random_state=0, return_notes=True)
    >>> clips.shape, clips.dtype, np.unique(labels).tolist()
    ((50, 16000), dtype('float32'), ['arch', 'falling', 'rising', 'valley', 'zigzag'])
    >>> np.unique(groups).size, notes.shape
    (10, (50, 5))
    >>> np.argsort(notes[labels == "arch"][0]).tolist()  # positions from lowest to highest note
    [0, 4, 1, 3, 2]
    """
    n_samples = _check_generator_args(n_per_class, clips_per_recording, sr, duration, noise)
    if duration < 0.2:
        raise ValueError(
            f"duration={duration!r} s is too short for five notes: use at least 0.2 s."
        )
    unknown = [name for name in instruments if name not in INSTRUMENTS]
    if unknown or not len(instruments):
        raise ValueError(
            f"instruments must be a non-empty selection of {INSTRUMENTS}, got "
            f"instruments={instruments!r}."
        )
    rng = check_random_state(random_state)

    names = list(CONTOURS)
    n_classes, n_notes = len(names), len(CONTOURS[names[0]])
    n_clips = n_classes * n_per_class
    label_index = np.repeat(np.arange(n_classes), n_per_class)
    recording = np.arange(n_per_class) // clips_per_recording
    n_recordings = int(recording[-1]) + 1
    groups = label_index * n_recordings + np.tile(recording, n_classes)
    instrument = rng.randint(len(instruments), size=n_classes * n_recordings)[groups]

    # One row per note, clip by clip: (clip, position).
    clip_of_note = np.repeat(np.arange(n_clips), n_notes)
    steps = np.asarray([CONTOURS[name] for name in names])[label_index].ravel()
    semitones = (
        _CONTOUR_STEP * (steps - (n_notes - 1) / 2)
        + rng.uniform(-1, 1, n_clips)[clip_of_note]
        + rng.uniform(-0.25, 0.25, clip_of_note.shape)
    )

    # Timing: the melody's slots, then each note's onset and length inside its slot.
    melody = rng.uniform(0.8, 0.95, n_clips) * duration
    start = rng.uniform(0, 1, n_clips) * (duration - melody)
    slot = np.repeat(melody / n_notes, n_notes)
    slot_start = start[clip_of_note] + np.tile(np.arange(n_notes), n_clips) * slot
    onset = slot_start + rng.uniform(0, 0.1, clip_of_note.shape) * slot
    length = rng.uniform(0.75, 0.9, clip_of_note.shape) * slot
    note_samples = int(np.ceil(length.max() * sr))
    t = np.arange(note_samples) / sr

    # Reshaped to one row per clip below: the annotations leave the number of axes open.
    notes: NDArray[np.float64] = np.empty(clip_of_note.shape)
    audio: NDArray[np.float32] = np.zeros((clip_of_note.shape[0], note_samples), dtype=np.float32)
    for index, name in enumerate(instruments):
        rows = np.flatnonzero(instrument[clip_of_note] == index)
        if rows.size == 0:
            continue
        # Consecutive recording ids for _voice: a recording's notes share its timbre and centre.
        _, recording_ids = np.unique(groups[clip_of_note[rows]], return_inverse=True)
        voice = _voice(name, rng, recording_ids)
        centre = _per_recording(rng, recording_ids, *_CONTOUR_REGISTER, log=True)
        voice.f0 = centre * 2.0 ** (semitones[rows, None] / 12)
        notes[rows] = voice.f0[:, 0]
        audio[rows] = _render(voice, rng, t, np.zeros((rows.size, 1)), sr)
    # Each note ends at its length with a short linear fade, at a loudness within +-1.5 dB.
    gate = np.clip((length[:, None] - t) / _RELEASE, 0.0, 1.0)
    audio *= (gate * 10 ** (rng.uniform(-1.5, 1.5, (clip_of_note.shape[0], 1)) / 20)).astype(
        np.float32
    )

    # Place the notes: one assignment per position, as a clip's notes never overlap. The
    # padding takes the silent tails of the last notes that run past the clip's end.
    signal = np.zeros((n_clips, n_samples + note_samples), dtype=np.float32)
    first = np.round(onset * sr).astype(int).reshape(n_clips, n_notes)
    audio = audio.reshape(n_clips, n_notes, note_samples)
    rows = np.arange(n_clips)[:, None]
    for position in range(n_notes):
        signal[rows, first[:, position, None] + np.arange(note_samples)] += audio[:, position]
    clips = _add_noise_and_level(signal[:, :n_samples], rng, noise)
    labels = np.asarray(names)[label_index]
    notes = notes.reshape(n_clips, n_notes)
    arrays = _shuffled(rng, shuffle, clips, labels, groups, notes)
    return arrays if return_notes else arrays[:3]
