"""An experiment on a folder of recordings: the loader's report and misclassified clips as sounds."""

import json

import mlflow
import numpy as np
import pytest
import soundfile as sf
from mlflow import MlflowClient
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import make_pipeline

import mlx
from mlx.audio import LogMelFeatures, load_audio_folder, make_instrument_sounds, write_audio_folder
from mlx.tracking import schema


@pytest.mark.filterwarnings("ignore:load_audio_folder skipped:UserWarning")
def test_an_audio_folder_run_logs_the_loaders_report_and_wrong_clips_as_sounds(stores, tmp_path):
    uri, storage = stores
    clips, labels, groups = make_instrument_sounds(16, sr=8000, duration=0.25, random_state=0)
    root = write_audio_folder(tmp_path / "sounds", clips, labels, groups, 8000)
    (root / "flute" / "empty.wav").write_bytes(b"")  # skipped, and said so
    experiment = mlx.Experiment(
        "folder",
        lambda: load_audio_folder(root, sr=8000, duration=0.25),
        # A model that always says the same class: most test clips are wrong, on purpose.
        make_pipeline(LogMelFeatures(sr=8000, n_mels=8), DummyClassifier()),
        {},
        n_trials=1,
    )
    result = mlx.run(experiment, tracking_uri=uri, storage=storage, show_progress=False)
    path = f"runs:/{result.run_id}/{schema.ARTIFACT_SOURCE_REPORT}"
    report = mlflow.artifacts.load_dict(path)
    assert report["n_loaded"] == len(clips)
    assert [s["reason"] for s in report["skipped"]] and "empty.wav" in json.dumps(report)
    client = MlflowClient(uri)
    files = [a.path for a in client.list_artifacts(result.run_id, "test/misclassified")]
    assert result.test_scores["accuracy"] < 0.5
    wavs = [f for f in files if f.endswith(".wav")]
    assert wavs and len(wavs) == len([f for f in files if f.endswith(".png")])
    local = mlflow.artifacts.download_artifacts(f"runs:/{result.run_id}/{wavs[0]}")
    sound, rate = sf.read(local)
    assert rate == 8000 and len(sound) == clips.shape[1] and np.abs(sound).max() > 0
    assert "_pred-" in wavs[0]
