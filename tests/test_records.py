"""Typed metrics records: written as plain JSON, read back typed, strict about what is missing."""

from __future__ import annotations

import json

import pytest

from emotiw_utils import artifacts, records, stages
from emotiw_utils.protocol import check_partition

PART = records.PartitionRecord.of(check_partition(["Train"], "Val"))


def test_round_trip_through_metrics_json(tmp_path):
    rec = records.AudioRecord(partition=PART, table1={"Audio": records.Accuracies((0.5, 0.6), (0.3,))},
                              n_components=20, C=3.0, gamma="scale")
    rec.write(stages.AUDIO.dir(tmp_path), seconds=1.5)
    raw = json.loads((stages.AUDIO.dir(tmp_path) / stages.METRICS).read_text())
    assert raw["n_components"] == 20 and raw["partition"]["train_splits"] == ["Train"] and raw["seconds"] == 1.5
    back = records.read(tmp_path, stages.AUDIO)
    assert back == rec and isinstance(back.partition.partition.train, tuple)


def test_every_record_class_round_trips(tmp_path):
    for st in stages.STAGES:
        if st.record is None:
            continue
        cls = records.record_class(st)
        cls(partition=PART).write(st.dir(tmp_path))
        assert records.read(tmp_path, st.name) == cls(partition=PART)


def test_extras_may_not_shadow_record_fields(tmp_path):
    with pytest.raises(ValueError, match="clash"):
        records.SvmRecord(partition=PART).write(tmp_path, C=2)


def test_missing_field_is_an_error_not_a_default(tmp_path):
    artifacts.write_metrics(stages.ACTIVITY.dir(tmp_path), {"partition": PART.__dict__ | {"train_splits": ["Train"]},
                                                            "table1": {}, "gamma": "scale"})
    with pytest.raises(ValueError, match=r"lacks \['C'\].*run the stage again"):
        records.read(tmp_path, stages.ACTIVITY)


def test_missing_file_names_the_stage(tmp_path):
    with pytest.raises(FileNotFoundError, match="run stage 07_fusion first"):
        records.read(tmp_path, stages.FUSION)
    with pytest.raises(ValueError, match="writes no metrics record"):
        records.record_class(stages.DATASETS)
