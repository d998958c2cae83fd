"""The one registry: every family is listed, duplicates are refused, unknown names are named."""

from __future__ import annotations

import pytest

from chanformer import registry


def test_every_family_and_table_is_populated_from_the_providers():
    assert {"softs_small", "channelvit_test", "ecapa_tdnn", "mvpformer_s"} <= set(registry.list_models("encoder"))
    assert set(registry.list_models("mil")) == {"acmil", "abmil", "mean"}
    assert set(registry.list_models("enhancement")) == {"mambattention", "mambattention_test"}
    assert {"encoder", "forecaster", "acmil", "mambattention"} <= set(registry.names("spec"))
    assert {"softs", "acmil", "ecapa_tdnn", "mambattention"} <= set(registry.names("converter"))
    where = registry.modules()
    assert "model:acmil" in where["chanformer.mil.acmil"] and "spec:encoder" in where["chanformer.encoders._registry"]
    assert registry.model_family("mean") == "mil"


def test_a_second_registration_of_a_name_is_refused():
    def softs_small(**kw):  # same name as a shipped encoder
        raise AssertionError("never built")

    with pytest.raises(ValueError, match=r"model 'softs_small' is registered twice"):
        registry.register("model", "softs_small", softs_small, "encoder")
    with pytest.raises(ValueError, match="table"):
        registry.register("widgets", "x", softs_small)


def test_unknown_names_are_named_with_close_matches():
    with pytest.raises(ValueError, match=r"unknown encoder name 'softs_tiny'.*softs_small"):
        registry.lookup("model", "softs_tiny", family="encoder")
    with pytest.raises(ValueError, match=r"unknown mil name 'softs_small'.*acmil"):
        registry.lookup("model", "softs_small", family="mil")
    model = registry.create_model("acmil", in_dim=4, n_classes=2)
    assert type(model).__name__ == "ACMIL"
