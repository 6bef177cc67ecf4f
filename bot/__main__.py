"""Command line: ``python -m bot [run | triage | replay | eval | migrate | autonomy]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

OFFLINE = "the rules alone, even when OPENAI_API_KEY is set (without a key they run offline anyway)"
REPLAY_INPUT = """\
each line is one past conversation (every field but "messages" is optional):
  id            its id (--record needs one, at most 64 characters: it is stored under it)
  messages      [{"role": "customer" | "agent", "text", "at", "author"}], in order; "at" is an ISO-8601
                time (without a zone: in "tz", else UTC); a message without "at" comes one minute after
                the one before it (with no times at all, the conversation starts now); "author" is a name
  tz            the customer's IANA time zone
  customer      the customer's id (conversations that share it are one customer's: repeat contacts)
  platform      slack (default), discord, ...
  organisation  the customer's organisation
  outcome       what the humans did: {"escalated": true | false, "route", "escalated_at", "claimed_by",
                "claimed_at", "resolved_at" (a time, or a list when it was resolved more than once: a
                customer message after a resolution reopens it), "resolved_by", "csat": 1-5}
--record stores the customer and staff messages at their times, the bot's decision on each customer
message, the transitions (opened; escalated at "escalated_at", else at the first staff reply or claim;
claimed at "claimed_at", else at the first staff reply; resolved; reopened), the CSAT, and a shadow draft
where the bot would have answered and a person answered instead (`python -m bot autonomy` measures it).
A summary (stored, skipped, messages) goes to stderr; stdout is as without --record.
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Baton, the support bot.")
    parser.add_argument("--policy", help="policy file (default: $BATON_POLICY, else the shipped one)")
    sub = parser.add_subparsers(dest="command")

    parser.add_argument("--knowledge", help="help-center folder (default: $BATON_KNOWLEDGE, else the shipped one)")
    # `python -m bot` alone is `run`: its options are accepted before the command too.
    parser.add_argument("--tz", dest="tz", help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--log-file", dest="log_file", help=argparse.SUPPRESS)
    run = sub.add_parser("run", help="run Baton on the configured platforms; with none configured, the terminal "
                                     "playground (the default command)")
    run.add_argument("--tz", help="your IANA time zone in the playground (default: Baton asks)")
    run.add_argument("--resume", action="store_true", default=argparse.SUPPRESS,
                     help="playground: continue the last run's customer and conversation (default: a new customer)")
    run.add_argument("--log-file", dest="log_file", default=argparse.SUPPRESS,
                     help="playground: where the logs go (default: ./baton-playground.log)")
    run.add_argument("--role", choices=["all", "web", "gateway"], default=None,
                     help="web: the HTTP platforms (run N behind a load balancer); gateway: also Discord's gateway "
                          "(run one); all (default, $BATON_ROLE): everything in this process")

    rp = sub.add_parser("replay", help="shadow mode: what Baton would have done in past conversations",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=REPLAY_INPUT)
    rp.add_argument("file", help='JSON lines {"id", "messages": [{"role", "text", "at"?, "author"?}], "tz"?, '
                                 '"customer"?, "platform"?, "organisation"?, "outcome"?} (below); - for stdin')
    rp.add_argument("--json", action="store_true", help="one JSON line per conversation, then a summary line")
    rp.add_argument("--offline", action="store_true", help=OFFLINE)
    rp.add_argument("--record", action="store_true",
                    help="also store each conversation, with its human outcome and the bot's decisions, in the "
                         "configured database ($BATON_DATABASE_URL, migrated first), so that `report` and "
                         "`autonomy` cover it; a conversation recorded before (same platform and id) is skipped")

    triage = sub.add_parser("triage", help="decide on each message of a JSON-lines file; sends nothing")
    triage.add_argument("file", nargs="?", default="-", help="JSON lines {id, text, now?, tz?}; - for stdin")
    triage.add_argument("--now", help="ISO-8601 'now' for resolving relative dates (default: the clock)")
    triage.add_argument("--tz", help="IANA time zone of the customer (default: UTC)")
    triage.add_argument("--offline", action="store_true", help=OFFLINE)
    triage.add_argument("--jobs", type=int, default=0, metavar="N",
                        help="offline, decide in N processes (default: one per CPU core, at most 4; 1: this process)")

    ev = sub.add_parser("eval", help="score the detectors on labelled JSON lines {id, text, category, source?}")
    ev.add_argument("file", help="e.g. ../shared/eval/dev_messages.jsonl")
    ev.add_argument("--json", action="store_true", help="print the report as one JSON object")
    ev.add_argument("--offline", action="store_true",
                    help="score the offline engine only, even when OPENAI_API_KEY is set")
    ev.add_argument("--misses", type=int, default=0, metavar="N",
                    help="also list up to N rows per category that were scored wrong or left silent")

    sub.add_parser("migrate", help="create or upgrade the database schema ($BATON_DATABASE_URL)")

    au = sub.add_parser("autonomy", help="each intent's mode (shadow, draft, auto), the figures it stands on, and "
                                         "its last change; or confirm a proposed promotion")
    au.add_argument("--json", action="store_true", help="one JSON object (the schema is in the README)")
    au.add_argument("--promote", metavar="INTENT", help="confirm INTENT's proposed promotion (a lead's decision)")
    au.add_argument("--by", default="cli", help="who confirms the promotion (recorded with it)")

    rep = sub.add_parser("report", help="the KPIs of a period (README: KPIs), as JSON, CSV (one row per "
                                        "conversation) or one self-contained HTML file with charts")
    rep.add_argument("--since", help="first day (YYYY-MM-DD, in the business-hours zone) or an ISO-8601 moment; "
                                     "default: 7 days before --until")
    rep.add_argument("--until", help="last day, included (YYYY-MM-DD), or an ISO-8601 moment, excluded; "
                                     "default: today")
    rep.add_argument("--format", choices=("json", "csv", "html"), default="json")
    rep.add_argument("--output", "-o", default="-", help="the file to write; - (default) for standard output")

    dg = sub.add_parser("digest", help="the weekly digest of the last 7 days against the 7 before, posted now to "
                                       "$BATON_LEADS_CHANNEL (the timer posts it once a week by itself)")
    dg.add_argument("--dry-run", action="store_true", help="post nothing: print the message's blocks as JSON")
    dg.add_argument("--png", metavar="PATH", help="with --dry-run: also write the chart to PATH")
    dg.add_argument("--now", help="ISO-8601 moment to take as now (default: the clock): the digest covers the 7 "
                                  "full days before its day")
    dg.add_argument("--channel", help="post there instead of $BATON_LEADS_CHANNEL")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from bot import cli, logs  # imported late so that --help stays instant

    command = args.command or "run"
    if command != "run":  # `run` sends its logs where they belong (the playground: to a file)
        logs.configure("warning" if command in ("triage", "eval", "replay", "report", "digest") else "info")
    from bot.database import DatabaseUnavailable

    try:
        return int(getattr(cli, command)(args))
    except (cli.UsageError, DatabaseUnavailable) as exc:  # a bad database is one line too, from any command
        print(f"baton: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # e.g. `python -m bot triage f | head`
        return 0
    except KeyboardInterrupt:  # Ctrl-C in a batch command: no traceback
        print("baton: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
