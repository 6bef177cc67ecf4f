"""Benchmark: `python -m bot triage` on 10,000 messages, as a whole process (start-up included).

Prints messages per second and peak memory (PSS of the process and its workers) for one process
(``--jobs 1``, the baseline) and for the default (a worker per core), and whether the help center's
sentence-embedding model was loaded (without it Baton ranks answers lexically, which is cheaper). Not a test: run it by
hand or in CI and read the numbers. The messages are generated here from templates (no dataset needed);
some how-to questions carry links, mentions and emoji codes, as chat messages do:

    python benchmarks/triage_throughput.py [--messages 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

OPENERS = ["", "Hi team, ", "Hey - ", "Hello! ", "Quick one: ", "URGENT: ", "fyi "]
# Sign-offs make nearly every text distinct, as real traffic is: caches then save little.
NAMES = ["Ana", "Ben", "Chloe", "Dev", "Emeka", "Farah", "Gus", "Hana", "Ivan", "Jia", "Kofi", "Lena", "Mateo", "Nia",
         "Omar", "Pia", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Viktor", "Wen", "Xavi", "Yara", "Zoe"]
CLOSERS = ["", " thanks", " thx!", " cheers"] + [f" - {n}" for n in NAMES] + [f" ({n}, ops team)" for n in NAMES] \
    + [f" thanks, {n}" for n in NAMES] + [f" sent from the {d}" for d in ("train", "airport", "office", "phone")]
BODIES = [
    "how do I connect my {cal} calendar?",
    "the recording of our {meeting} from {when} is missing",
    "you charged us twice for {n} seats this month",
    "the notetaker didn't join my {meeting} {when}",
    "is the app down? nobody on our team can log in",
    "we will not be renewing, the summaries are useless",
    "can I export notes from the {meeting} to HubSpot?",
    "this is the third time I'm asking about the {meeting} transcript!!",
    "please delete my account",
    "someone logged into my account from an unknown device",
    "what's the difference between the Pro and Business plans?",
    "thanks, that worked perfectly",
    "all our recordings from {when} are gone",
    "no refund needed, just curious how annual billing works",
    "can I talk to a real person please?",
    "<@U024BE7LH> how do I share a recording with someone outside the company? {link}",
    "does the notetaker work with {platform} calls? :thinking_face:",
    "where do I stop the bot from joining the {meeting}? <https://app.notewise.example/calendar|calendar>",
    "can Notewise transcribe meetings in {language}?",
    "how long do you keep recordings on the {plan} plan?",
]
FILL = {
    "cal": ["Google", "Outlook", "iCloud"],
    "meeting": ["Weekly Sync", "board meeting", "standup", "QBR with Acme", "1:1"],
    "when": ["yesterday", "last Tuesday at 4pm", "this morning", "Nov 3 at 10:30am"],
    "n": ["12", "40", "250"],
    "link": ["https://app.notewise.example/r/8812", "<https://app.notewise.example/r/17|this one>", ""],
    "platform": ["Zoom", "Teams", "Webex", "Google Meet"],
    "language": ["Japanese", "Polish", "German", "Portuguese"],
    "plan": ["Free", "Pro", "Business"],
}


def make_messages(count: int, seed: int = 7) -> list[dict[str, object]]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        body = rng.choice(BODIES)
        text = rng.choice(OPENERS) + body.format(**{k: rng.choice(v) for k, v in FILL.items()}) + rng.choice(CLOSERS)
        rows.append({"id": i, "text": text})
    return rows


def _pss_kb(pid: int) -> int:
    """The proportional set size of ``pid`` and its children (shared pages counted once in all), in KB."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    total = 0
    for one in pids + [int(c) for c in children]:
        try:
            for line in Path(f"/proc/{one}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def run_once(path: Path, jobs: int) -> tuple[float, float]:
    """Wall seconds and peak memory (MB, PSS of the process and its workers) of one `python -m bot triage`."""
    start = time.perf_counter()
    with subprocess.Popen([sys.executable, "-m", "bot", "triage", str(path), "--jobs", str(jobs)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) as proc:
        peak = 0
        while True:
            peak = max(peak, _pss_kb(proc.pid))
            try:
                proc.wait(timeout=0.1)
                break
            except subprocess.TimeoutExpired:
                continue
        elapsed = time.perf_counter() - start
        errors = proc.stderr.read() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"triage failed: {errors}")
    return elapsed, peak / 1024


def embedding_model() -> str:
    """Whether a process started like triage loads the embedding model (its own words when it does not)."""
    probe = ("from bot.knowledge import KnowledgeBase\nfrom bot.policy import load_policy\n"
             "kb = KnowledgeBase.load(None, load_policy().knowledge)\nprint('loaded' if kb.semantic else 'NOT loaded')")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        return f"unknown (the probe failed: {proc.stderr.strip()[-300:]})"
    found = proc.stdout.strip()
    return found if found == "loaded" else f"{found}, answers ranked lexically ({proc.stderr.strip()[-300:]})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    jobs = min(os.cpu_count() or 1, 4)
    model = embedding_model()  # also prepares the model and the articles' vectors once, as a first start does
    distinct = len({str(row["text"]) for row in make_messages(args.messages)})
    print(f"triage: {args.messages} messages ({distinct:,} distinct texts), {args.runs} runs each, "
          "whole process including start-up (the model's cache prepared once before); memory is the peak PSS "
          "of the process and its workers")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "messages.jsonl"
        path.write_text("\n".join(json.dumps(r) for r in make_messages(args.messages)) + "\n")
        for label, n in (("one process (--jobs 1, the baseline)", 1), (f"default (--jobs {jobs})", jobs)):
            times, peaks = [], []
            for _ in range(args.runs):
                elapsed, peak = run_once(path, n)
                times.append(elapsed)
                peaks.append(peak)
            median = statistics.median(times)
            print(f"  {label}: {args.messages / median:,.0f} messages/s (median of {median:.2f} s; "
                  f"min {min(times):.2f}, max {max(times):.2f}), peak memory {max(peaks):.0f} MB")
    print(f"  embedding model:       {model}")


if __name__ == "__main__":
    main()
