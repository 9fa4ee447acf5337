"""claptune.audio: decoding of every supported format, resampling, downmix, bad files, windows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from claptune.audio import (
    find_audio,
    fixed_window,
    load_audio,
    pad_window,
    random_window,
    resample,
    windows,
)
from claptune.errors import AudioDecodeError, ClaptuneError
from conftest import CAPTIONED_SFX, require_shared_data


def _stereo_tone(rate: int, seconds: float = 0.5) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    left = 0.4 * np.sin(2 * np.pi * 440 * t)
    right = 0.3 * np.sin(2 * np.pi * 660 * t)
    return np.stack([left, right], axis=1).astype(np.float32)


def _reference(stereo: np.ndarray, rate: int, target: int) -> np.ndarray:
    return soxr.resample(stereo.mean(axis=1), rate, target, quality="HQ")


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_lossless_formats_decode_downmix_and_resample(tmp_path, ext):
    stereo = _stereo_tone(44100)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, stereo, 44100)
    wave = load_audio(path, 48000)
    ref = _reference(stereo, 44100, 48000)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert wave.shape == ref.shape
    np.testing.assert_allclose(wave, ref, atol=2e-4)  # 16-bit quantisation of the file


@pytest.mark.parametrize("ext", ["ogg", "mp3"])
def test_lossy_formats_decode_close_to_the_source(tmp_path, ext):
    stereo = _stereo_tone(48000)
    path = tmp_path / f"tone.{ext}"
    sf.write(path, stereo, 48000)
    wave = load_audio(path, 48000)
    ref = stereo.mean(axis=1)
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(len(wave) - len(ref)) <= 2 * 1152  # codec delay/padding at most
    # Align on the best lag (decoders may add a delay) and compare shapes of the signal.
    lags = range(-1200, 1201, 1)
    n = len(ref) - 2400
    corr = max(
        np.corrcoef(ref[1200 : 1200 + n], wave[1200 + lag : 1200 + lag + n])[0, 1]
        for lag in lags
        if 0 <= 1200 + lag and 1200 + lag + n <= len(wave)
    )
    assert corr > 0.98


def test_resampling_keeps_the_frequency(tmp_path):
    rate = 16000
    t = np.arange(rate) / rate
    path = tmp_path / "tone.wav"
    sf.write(path, (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32), rate, subtype="FLOAT")
    wave = load_audio(path, 48000)
    assert len(wave) == 48000
    spectrum = np.abs(np.fft.rfft(wave))
    assert np.argmax(spectrum) == pytest.approx(1000, abs=1)  # 1 s at 48 kHz: bin = Hz


def test_downmix_is_the_channel_mean(tmp_path):
    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((1000, 3))).astype(np.float32)
    path = tmp_path / "three.wav"
    sf.write(path, x, 8000, subtype="FLOAT")
    np.testing.assert_allclose(load_audio(path, 8000), x.mean(axis=1), atol=1e-7)


def test_resample_same_rate_is_identity():
    x = np.random.default_rng(0).standard_normal(100).astype(np.float32)
    np.testing.assert_array_equal(resample(x, 22050, 22050), x)


def _truncated(tmp_path, ext: str):
    good = tmp_path / f"good.{ext}"
    sf.write(good, _stereo_tone(48000, 1.0), 48000)
    data = good.read_bytes()
    bad = tmp_path / f"cut.{ext}"
    bad.write_bytes(data[: len(data) // 2])
    return bad


@pytest.mark.parametrize("ext", ["wav", "flac", "ogg", "mp3"])
def test_truncated_files_are_refused(tmp_path, ext):
    with pytest.raises(AudioDecodeError) as err:
        load_audio(_truncated(tmp_path, ext), 48000)
    assert err.value.path.endswith(f"cut.{ext}")


def test_missing_empty_and_non_audio_files_are_refused(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    text = tmp_path / "notes.flac"
    text.write_text("this is not audio\n" * 50)
    cases = {tmp_path / "missing.wav": "not found", empty: "empty", text: "not a readable"}
    for path, reason in cases.items():
        with pytest.raises(AudioDecodeError) as err:
            load_audio(path, 48000)
        assert err.value.path == str(path)
        assert reason in err.value.reason
        assert isinstance(err.value, ClaptuneError)


def test_pad_window_modes():
    x = np.arange(1, 8, dtype=np.float32)  # 7 samples into 20
    np.testing.assert_array_equal(
        pad_window(x, 20, "repeatpad"), np.concatenate([x, x, np.zeros(6, np.float32)])
    )
    np.testing.assert_array_equal(pad_window(x, 20, "repeat"), np.concatenate([x, x, x[:6]]))
    np.testing.assert_array_equal(
        pad_window(x, 20, "pad"), np.concatenate([x, np.zeros(13, np.float32)])
    )
    with pytest.raises(ValueError):
        pad_window(x, 5)


def test_windows_cover_a_long_clip_with_the_last_aligned_to_the_end():
    x = np.arange(25, dtype=np.float32)
    w = windows(x, 10)
    assert w.shape == (3, 10)
    np.testing.assert_array_equal(w[0], x[:10])
    np.testing.assert_array_equal(w[1], x[10:20])
    np.testing.assert_array_equal(w[2], x[15:25])
    assert windows(np.arange(30, dtype=np.float32), 10).shape == (3, 10)  # exact multiple
    np.testing.assert_array_equal(windows(x[:10], 10), x[None, :10])  # exactly one window
    np.testing.assert_array_equal(windows(x[:4], 10)[0], pad_window(x[:4], 10))
    np.testing.assert_array_equal(fixed_window(x, 10), w[0])
    np.testing.assert_array_equal(fixed_window(x[:4], 10), pad_window(x[:4], 10))


def test_random_window_is_a_reproducible_slice():
    x = np.arange(100, dtype=np.float32)
    a = random_window(x, 10, np.random.default_rng(3))
    b = random_window(x, 10, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (10,) and np.all(np.diff(a) == 1) and 0 <= a[0] <= 90
    starts = {random_window(x, 10, np.random.default_rng(s))[0] for s in range(20)}
    assert len(starts) > 1


def test_find_audio_folders_lists_and_missing(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ["a/x.wav", "a/b/y.FLAC", "a/readme.md", "a/._x.wav"]:
        (tmp_path / name).write_bytes(b"0")
    listing = tmp_path / "list.txt"
    listing.write_text("# a comment\na/x.wav\n\n")
    assert find_audio([tmp_path / "a"]) == [tmp_path / "a/b/y.FLAC", tmp_path / "a/x.wav"]
    assert find_audio([listing]) == [tmp_path / "a/x.wav"]
    with pytest.raises(ClaptuneError):
        find_audio([tmp_path / "nope"])


def test_real_clips_at_native_rates_resample_to_the_right_length():
    root = require_shared_data(CAPTIONED_SFX)
    with (root / "manifest.csv").open(newline="") as fh:
        paths = [root / row["path"] for row in csv.DictReader(fh)]
    by_rate: dict[int, Path] = {}
    for path in paths:
        by_rate.setdefault(sf.info(path).samplerate, path)
        if len(by_rate) == 3:
            break
    assert len(by_rate) == 3
    for rate, path in by_rate.items():
        wave = load_audio(path, 48000)
        expected = sf.info(path).frames * 48000 / rate
        assert abs(len(wave) - expected) <= 1, (path, rate)
        assert np.isfinite(wave).all() and np.abs(wave).max() > 0


# -- streaming: the same samples and windows in bounded memory -------------------------------
def _one_shot(path, sample_rate):
    """The whole-file decoder claptune used before streaming: the oracle for stream_audio."""
    import soundfile as sf
    import soxr

    data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    wave = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if rate == sample_rate:
        return wave
    return soxr.resample(wave, rate, sample_rate, quality="HQ").astype(np.float32)


@pytest.mark.parametrize(
    "file_rate,channels,fmt",
    [(8000, 1, "FLAC"), (8000, 2, "WAV"), (44100, 1, "WAV"), (48000, 2, "FLAC")],
)
def test_stream_audio_equals_one_shot_decode(tmp_path, file_rate, channels, fmt):
    import soundfile as sf

    from claptune.audio import load_audio, stream_audio

    rng = np.random.default_rng(file_rate + channels)
    data = rng.uniform(-0.5, 0.5, (3 * file_rate + 17, channels)).astype(np.float32)
    path = tmp_path / f"x.{fmt.lower()}"
    sf.write(str(path), data, file_rate, format=fmt, subtype="FLOAT" if fmt == "WAV" else None)
    expected = _one_shot(path, 44100)
    for block in (1000, 4096, 1 << 16):
        blocks = list(stream_audio(path, 44100, block_frames=block))
        assert all(b.dtype == np.float32 and b.ndim == 1 for b in blocks)
        got = np.concatenate(blocks)
        assert got.shape == expected.shape
        np.testing.assert_array_equal(got, expected)  # bit for bit, not just close
    np.testing.assert_array_equal(load_audio(path, 44100), expected)


@pytest.mark.parametrize("padding", ["repeatpad", "repeat", "pad"])
def test_stream_windows_equal_windows(padding):
    from claptune.audio import stream_windows, windows

    clip = 100
    rng = np.random.default_rng(0)
    for n in (1, 37, 99, 100, 101, 199, 200, 201, 250, 1000, 1001, 2345):
        wave = rng.normal(size=n).astype(np.float32)
        expected = windows(wave, clip, padding)
        for block in (1, 7, 100, 333, 5000):
            pieces = [wave[i : i + block] for i in range(0, n, block)]
            got = np.concatenate(list(stream_windows(iter(pieces), clip, padding)))
            np.testing.assert_array_equal(got, expected, err_msg=f"n={n} block={block}")


def test_stream_windows_hold_bounded_memory():
    from claptune.audio import stream_windows

    clip, block = 100, 50
    seen_sizes = []

    def blocks():
        for _ in range(10_000):  # 500,000 samples: far more than what is held at any time
            yield np.ones(block, np.float32)

    for chunk in stream_windows(blocks(), clip):
        seen_sizes.append(chunk.shape[0])
    assert sum(seen_sizes) == 5000 and max(seen_sizes) <= 1


def test_stream_audio_reports_bad_samples_mid_file(tmp_path):
    import soundfile as sf

    from claptune.audio import stream_audio

    data = np.zeros(20_000, np.float32)
    data[15_000] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), data, 8000, subtype="FLOAT")
    stream = stream_audio(path, 8000, block_frames=4000)
    assert next(stream).shape == (4000,)  # blocks before the bad one come through
    with pytest.raises(AudioDecodeError, match="non-finite"):
        list(stream)
