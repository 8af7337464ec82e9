"""The shared-data guard of conftest: a missing ../shared skips locally but fails under CI."""

from __future__ import annotations

import pytest

from conftest import need_shared


def test_missing_shared_data_skips_locally_and_fails_under_ci(tmp_path):
    missing = tmp_path / "shared"
    with pytest.raises(pytest.skip.Exception, match="shared data not found"):
        need_shared(missing, env={})
    with pytest.raises(pytest.fail.Exception, match=f"shared data not found: {missing}"):
        need_shared(missing, env={"CI": "true"})
    assert need_shared(tmp_path, env={"CI": "true"}) == tmp_path
