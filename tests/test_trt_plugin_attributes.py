"""String attributes of our TensorRT plugins as NVIDIA's ONNX parser delivers them (NUL-terminated)."""

from __future__ import annotations

import json

import pytest

from edgeseg.errors import EdgesegError
from edgeseg.plugins.tensorrt._common import json_attribute


@pytest.mark.parametrize("raw", ['{"window": 7, "iterations": 5}\0', b'{"window": 7, "iterations": 5}\0',
                                 '{"window": 7, "iterations": 5}'])
def test_nul_terminated_params_parse(raw):
    text = '{"window": 7, "iterations": 5}\0'
    with pytest.raises(json.JSONDecodeError):  # what the plugin did before: every frame failed
        json.loads(text)
    assert json_attribute("params", raw) == {"window": 7, "iterations": 5}


@pytest.mark.parametrize("raw", ["", "\0", b"\0"])
def test_empty_params_mean_no_options(raw):
    assert json_attribute("params", raw) == {}


@pytest.mark.parametrize("raw, expected", [('{"window": 7\0', "not valid JSON"), ("[1, 2]\0", "JSON list")])
def test_bad_params_name_field_and_value(raw, expected):
    with pytest.raises(EdgesegError, match=expected) as info:
        json_attribute("params", raw)
    assert "params=" in str(info.value)
