"""The scale benchmark's generated configs are valid, distinct per homenet, and survive TOML."""
from __future__ import annotations

import pathlib
import tomllib

from bench.scale_configs import (
    POLICY_A,
    POLICY_B,
    REAL_V4_POOL,
    SLA_POLICY,
    config_dict,
    homenet_table,
    sla_homenets,
    to_toml,
)
from bench.scale_real import write_config
from msp_controller.api.auth import digest
from msp_controller.core import MspCore
from msp_controller.model.config import load_config, parse_config, parse_homenet
from msp_controller.model.homenet_index import HomenetIndex
from msp_controller.model.policy import parse_policy


def test_generated_config_parses_with_distinct_homenets() -> None:
    config = parse_config(config_dict(50))
    assert len(config.homenets) == 50
    assert len({h.dpid for h in config.homenets}) == 50
    assert len({u.underlay_dpid for h in config.homenets for u in h.uplinks}) == 100
    assert {h.edges for h in config.homenets} == {("edge1", "edge2")}


def test_toml_round_trip_without_bgp() -> None:
    data = config_dict(3, REAL_V4_POOL, bgp=False)
    assert tomllib.loads(to_toml(data)) == data
    config = parse_config(tomllib.loads(to_toml(data)))
    assert config.bgp is None
    assert all(not edge.bgp_neighbors for edge in config.edges)
    assert all(p.subnet_of(REAL_V4_POOL) for h in config.homenets for p in h.prefixes_v4)


def test_extra_homenet_does_not_clash_with_the_config() -> None:
    config = parse_config(config_dict(5, REAL_V4_POOL, bgp=False))
    extra = parse_homenet(homenet_table(6, REAL_V4_POOL), config)
    index = HomenetIndex(config.edges)
    for homenet in config.homenets:
        index.add(homenet)
    index.check(extra)  # raises FieldError on a clash


def test_policies_are_valid_and_one_in_ten_has_sla() -> None:
    config = parse_config(config_dict(20))
    for body in (SLA_POLICY, POLICY_A, POLICY_B):
        parse_policy(body, config.homenets[0])
    assert sla_homenets(h.name for h in config.homenets) == ["hn10", "hn20"]
    core = MspCore(config, {h.name: parse_policy(SLA_POLICY, h) for h in config.homenets[9::10]})
    assert core.prober.sla_count() > 0


def test_real_config_file_admits_its_token(tmp_path: pathlib.Path) -> None:
    path, _, token = write_config(tmp_path, 3)
    config = load_config(str(path))
    assert [t.sha256 for t in config.api_tokens] == [digest(token)]
    assert (tmp_path / "msp-operator.token").read_text().strip() == token
