"""A scripted stand-in for `dtq executor-shim --serve`, used ONLY by test_shim_protocol.py to
test the client's JSON-lines framing, id matching, error mapping, restarts and timeouts.

It implements none of the shim's semantics (no ledger, no queue): the end-to-end tests run
the real `dtq executor-shim`. Each request line is answered according to SCRIPTED_SHIM_PLAN,
a JSON list of actions taken in turn (the last one repeats):
  echo        ok, result = {"request": <the request>, "argv": [...], "secret": $DTQ_LEDGER_DSN}
  error:CODE  ok false with that error code (retryable for *_UNAVAILABLE)
  wrong_id    answer with an id that does not match
  garbage     a line that is not JSON
  split       the echo answer written in two pieces, 0.2 s apart
  silent      never answer (sleep)
  die         exit 3 without answering
  die_once    like die if SCRIPTED_SHIM_MARK does not exist (and creates it), else echo
"""

import json
import os
import sys
import time


def main() -> int:
    plan = json.loads(os.environ.get("SCRIPTED_SHIM_PLAN", '["echo"]'))
    n = 0
    for line in sys.stdin:
        action = plan[min(n, len(plan) - 1)]
        n += 1
        try:
            req = json.loads(line)
        except ValueError:
            print(json.dumps({"id": None, "ok": False, "error": {"code": "BAD_REQUEST"}}))
            sys.stdout.flush()
            continue
        echo = {
            "id": req.get("id"),
            "ok": True,
            "result": {
                "request": req,
                "argv": sys.argv,
                "secret": os.environ.get("DTQ_LEDGER_DSN"),
                "pid": os.getpid(),
            },
        }
        if action == "die_once":
            mark = os.environ["SCRIPTED_SHIM_MARK"]
            if os.path.exists(mark):
                action = "echo"
            else:
                open(mark, "w").close()
                action = "die"
        if action == "echo":
            out = json.dumps(echo)
        elif action.startswith("error:"):
            code = action.split(":", 1)[1]
            err = {"code": code, "message": f"scripted {code}", "retryable": "UNAVAILABLE" in code}
            out = json.dumps({"id": req.get("id"), "ok": False, "error": err})
        elif action == "wrong_id":
            out = json.dumps({**echo, "id": 10_000 + (req.get("id") or 0)})
        elif action == "garbage":
            out = "this is not json"
        elif action == "split":
            text = json.dumps(echo)
            sys.stdout.write(text[:10])
            sys.stdout.flush()
            time.sleep(0.2)
            out = text[10:]
        elif action == "silent":
            time.sleep(3600)
            return 0
        elif action == "die":
            return 3
        else:
            raise SystemExit(f"unknown action {action}")
        sys.stdout.write(out + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
