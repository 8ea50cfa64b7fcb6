"""``[idgen]`` cross-field rules."""

from __future__ import annotations

import pydantic
import pytest

from gochat_actors import SettingsError, load_settings
from gochat_actors.idgen import IdGenSettings


def test_a_margin_renewals_every_third_of_the_ttl_cannot_keep_is_refused() -> None:
    """Issue 27 point 14: renewals run every lease_ttl/3 and each allows issuing for
    lease_ttl - margin; with margin >= 2/3 of lease_ttl IDs stop between renewals
    with a healthy etcd (lease_ttl=9, margin=7: a third of next_id() calls failed)."""
    with pytest.raises(SettingsError) as info:
        load_settings(idgen={"lease_ttl": 9.0, "margin": 7.0})
    [problem] = [p for p in info.value.problems if p.path.startswith("idgen.")]
    assert problem.path == "idgen.margin"
    assert "margin" in problem.message
    assert "lease_ttl" in problem.message
    assert "2/3" in problem.message
    with pytest.raises(pydantic.ValidationError, match="2/3 of lease_ttl"):
        IdGenSettings(lease_ttl=3.0, margin=2.0)
    assert IdGenSettings(lease_ttl=9.0, margin=5.9).margin == 5.9
