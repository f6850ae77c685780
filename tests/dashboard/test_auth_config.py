"""Login credentials, the signed session cookie, CSRF tokens, and the configuration file."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard.auth import Authenticator, Principal
from dashboard.config import AuthSection, ConfigError, DashboardConfig, UserEntry, rule_name

OPERATOR = UserEntry(name="olga", role="operator", password="operator-pass", token="t" * 32)
VIEWER = UserEntry(name="vic", role="viewer", password="viewer-pass")


def auth(**kw: object) -> Authenticator:
    return Authenticator(AuthSection(user=[OPERATOR, VIEWER], secret="s3cret", **kw))  # type: ignore[arg-type]


def test_passwords_and_tokens() -> None:
    a = auth()
    assert a.check_password("olga", "operator-pass") == Principal("olga", "operator")
    assert a.check_password("olga", "t" * 32) == Principal("olga", "operator")  # a token typed as a password
    assert a.check_password("vic", "viewer-pass") == Principal("vic", "viewer")
    assert a.check_password("vic", "operator-pass") is None  # someone else's password
    assert a.check_password("olga", "operator-pas") is None
    assert a.check_password("nobody", "operator-pass") is None
    assert a.check_token("t" * 32) == Principal("olga", "operator")
    assert a.check_token("t" * 31) is None
    assert Principal("olga", "operator").can_act and not Principal("vic", "viewer").can_act


def test_session_cookie_round_trip_forgery_and_expiry() -> None:
    a = auth(session_hours=1)
    cookie = a.issue(Principal("vic", "viewer"), now=1000.0)
    assert a.verify(cookie, now=1000.0 + 3599) == Principal("vic", "viewer")
    assert a.verify(cookie, now=1000.0 + 3600) is None  # expired
    body, _, sig = cookie.rpartition(".")
    import base64

    promoted = base64.urlsafe_b64encode(b"vic|operator|99999999999").decode().rstrip("=")
    assert a.verify(f"{promoted}.{sig}", now=1000.0) is None  # a viewer cannot make itself an operator
    assert a.verify(f"{body}.{'0' * len(sig)}", now=1000.0) is None
    assert a.verify("garbage", now=1000.0) is None and a.verify(None) is None and a.verify("a.b.c") is None
    other = Authenticator(AuthSection(user=[OPERATOR], secret="another"))
    assert other.verify(cookie, now=1000.0) is None  # a new secret ends every session


def test_csrf_token_is_bound_to_the_session() -> None:
    a = auth()
    one, two = a.issue(Principal("olga", "operator"), now=1.0), a.issue(Principal("olga", "operator"), now=2.0)
    assert a.check_csrf(one, a.csrf(one))
    assert not a.check_csrf(two, a.csrf(one))
    assert not a.check_csrf(None, a.csrf(one)) and not a.check_csrf(one, None) and not a.check_csrf(one, "")


def test_metrics_token() -> None:
    # No token configured: loopback clients only (was: open to everyone, issue 12), a local Prometheus.
    assert auth().metrics_allowed(None, True) and not auth().metrics_allowed(None, False)
    locked = auth(metrics_token="m" * 20)
    assert locked.metrics_allowed("Bearer " + "m" * 20, False)
    assert (
        not locked.metrics_allowed(None, True)
        and not locked.metrics_allowed("Bearer nope", True)
        and not locked.metrics_allowed("m" * 20, True)
    )


def test_secrets_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DP_TEST_OPERATOR_PASSWORD", "from-the-env")
    a = Authenticator(
        AuthSection(user=[UserEntry(name="olga", role="operator", password_env="DP_TEST_OPERATOR_PASSWORD")])
    )
    assert a.check_password("olga", "from-the-env") == Principal("olga", "operator")
    monkeypatch.delenv("DP_TEST_OPERATOR_PASSWORD")
    with pytest.raises(ConfigError, match="DP_TEST_OPERATOR_PASSWORD is not set"):
        Authenticator(AuthSection(user=[UserEntry(name="olga", password_env="DP_TEST_OPERATOR_PASSWORD")]))


def test_config_file(tmp_path: Path) -> None:
    (tmp_path / "reg.toml").write_text("")
    path = tmp_path / "dashboard.toml"
    path.write_text(
        """
[dashboard]
registry = "reg.toml"
refresh_s = 2
reading_interval_by_kind = { weather_station = 600 }
[influx]
database = "elsewhere"
[[auth.user]]
name = "olga"
role = "operator"
password = "long enough"
[alerts]
webhook_url = "http://127.0.0.1:1/hook"
[[alerts.rule]]
kind = "device_silent"
intervals = 5
[[alerts.rule]]
kind = "completeness_below"
name = "completeness-strict"
percent = 99.5
"""
    )
    config = DashboardConfig.load(path)
    assert config.dashboard.registry == tmp_path / "reg.toml"  # relative to the file
    assert config.influx.database == "elsewhere" and config.influx.url  # the rest from the DP_* environment
    assert config.reading_interval_s("weather_station") == 600  # type: ignore[arg-type]
    assert config.reading_interval_s("electricity_meter") == 60  # type: ignore[arg-type]
    assert [rule_name(r) for r in config.alerts.rule] == ["device_silent", "completeness-strict"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[dashboard]\nport = 8050\n", "no \\[\\[auth.user\\]\\]"),
        ("[auth]\nopen = true\n[[alerts.rule]]\nkind = 'sky_falling'\n", "alerts.rule.0"),
        (
            "[auth]\nopen = true\n[[alerts.rule]]\nkind = 'device_silent'\n[[alerts.rule]]\nkind = 'device_silent'\n",
            "unique",
        ),
        ("[auth]\nopen = true\n[dashboard]\nrefresh_s = 0\n", "dashboard.refresh_s"),
        ("[[auth.user]]\nname = 'x'\npassword = 'short'\n", "auth.user.0.password"),
        ("[auth]\nopen = true\n[dashboard]\nnot_an_option = 1\n", "not_an_option"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_config_errors_say_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "dashboard.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        DashboardConfig.load(path)


def test_cli_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from districtpulse.cli import main

    path = tmp_path / "dashboard.toml"
    path.write_text("[[auth.user]]\nname = 'olga'\nrole = 'operator'\npassword = 'long enough'\n")
    assert main(["dashboard", "--config", str(path), "--check"]) == 0
    assert capsys.readouterr().out == "dashboard: configuration OK (6 alert rules, 1 users)\n"
    assert main(["dashboard", "--config", str(tmp_path / "missing.toml"), "--check"]) == 2
    assert main(["dashboard", "--config", str(path), "--check", "--as-of", "2026-11-22T20:00:00"]) == 2  # no offset
