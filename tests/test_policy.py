from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.model import Severity
from bot.policy import DEFAULT_POLICY, PolicyError, load_policy

SHIPPED = (Path(__file__).resolve().parent.parent / "bot" / "defaults" / DEFAULT_POLICY).read_text()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(text)
    return path


def test_shipped_policy_is_valid(policy):
    assert set(policy.signals) >= {"frustration", "billing", "data_loss", "churn", "security", "outage",
                                   "human_request", "privacy"}
    assert set(policy.intents) == {"how_to", "meeting_issue", "billing", "account_access", "bug_report",
                                   "cancellation", "feedback", "other"}
    assert set(policy.routes) >= {"support", "billing", "engineering", "security", "leadership"}


def test_a_copy_of_the_shipped_file_loads_from_a_path(tmp_path):
    policy = load_policy(write(tmp_path, SHIPPED))
    assert policy.source.endswith("policy.toml")


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("tier = 'assisted'\nroute = 'billing'", "tier = 'assisted'\nroute = 'nowhere'"),
         "intents.billing.route: unknown route 'nowhere'"),
        (("critical = 15", "critical = -5"), "sla_minutes"),
        (("timezone = 'America/New_York'", "timezone = 'Mars/Olympus'"), "business_hours.timezone"),
        (("min_severity = 'medium'", "min_severity = 'urgent'"), "escalation.min_severity"),
        (("id = 'billing.refund'", "id = 'billing.wrong_charge'"), "rule ids must be unique"),
        (("'outage', 'service", "'outage(', 'service"), "not a valid regular expression"),
        (("days = ['mon'", "days = ['funday'"), "business_hours.days"),
        (("could you tell me {fields}?", "could you tell me {feilds}?"),
         "ask_details: unknown placeholder(s) ['feilds']"),
        (("fields = ['meeting_name', 'date', 'time', 'timezone']", "fields = ['meeting_name', 'order']"),
         "forms.meeting.fields: unknown field 'order'"),
        (("min_score = 0.45", "min_score = 1.5"), "knowledge.min_score"),
    ],
)
def test_invalid_policy_names_file_key_and_reason(tmp_path, change, expected):
    old, new = change
    assert old in SHIPPED
    path = write(tmp_path, SHIPPED.replace(old, new, 1))
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    message = str(err.value)
    assert str(path) in message
    assert expected in message


def test_unknown_key_is_refused(tmp_path):
    path = write(tmp_path, SHIPPED.replace("[meta]", "[meta]\ncolour = 'blue'", 1))
    with pytest.raises(PolicyError, match=r"meta\.colour: Extra inputs are not permitted"):
        load_policy(path)


def test_broken_toml_and_missing_file(tmp_path):
    with pytest.raises(PolicyError, match="not valid TOML"):
        load_policy(write(tmp_path, "[meta\nname="))
    with pytest.raises(PolicyError, match="cannot read the policy file"):
        load_policy(tmp_path / "nope.toml")


def test_sla_counts_business_hours_only(policy):
    ny = ZoneInfo("America/New_York")
    # Friday 17:30: 30 minutes left that day, the other 30 on Monday from 09:00.
    friday = datetime(2026, 11, 20, 17, 30, tzinfo=ny)
    assert policy.sla_due(Severity.high, friday) == datetime(2026, 11, 23, 9, 30, tzinfo=ny)
    # Saturday night: the clock starts Monday morning.
    saturday = datetime(2026, 11, 21, 22, 0, tzinfo=ny)
    assert policy.sla_due(Severity.critical, saturday) == datetime(2026, 11, 23, 9, 15, tzinfo=ny)
    # Within hours: plain addition.
    tuesday = datetime(2026, 11, 24, 10, 0, tzinfo=ny)
    assert policy.sla_due(Severity.medium, tuesday) == datetime(2026, 11, 24, 14, 0, tzinfo=ny)
