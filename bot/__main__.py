"""Command line: ``python -m bot [run | triage | replay | eval | migrate | autonomy]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

OFFLINE = "the rules alone, even when OPENAI_API_KEY is set (without a key they run offline anyway)"


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

    rp = sub.add_parser("replay", help="shadow mode: what Baton would have done in past conversations")
    rp.add_argument("file", help='JSON lines {"id", "messages": [{"role", "text", "at"?}], "tz"?, "customer"?, '
                                 '"outcome"?}; - for stdin')
    rp.add_argument("--json", action="store_true", help="one JSON line per conversation, then a summary line")
    rp.add_argument("--offline", action="store_true", help=OFFLINE)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from bot import cli, logs  # imported late so that --help stays instant

    command = args.command or "run"
    if command != "run":  # `run` sends its logs where they belong (the playground: to a file)
        logs.configure("warning" if command in ("triage", "eval", "replay") else "info")
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
