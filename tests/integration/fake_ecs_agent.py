"""A stand-in for the ECS agent's in-task endpoints, for tests/integration/it_ecs.c.

Usage: fake_ecs_agent.py PORT LOGFILE
Serves, as documented by AWS (task-scale-in-protection-endpoint, task
metadata v4):
  PUT  /task-protection/v1/state         -> {"protection": {...}} or 400 {"error": ...}
  PUT  /refuse/task-protection/v1/state  -> {"failure": {"Reason": "TASK_NOT_VALID", ...}}
  PUT  /flaky/task-protection/v1/state   -> 503 on the first call, then as above
  GET  /task                             -> task metadata v4
Every request is appended to LOGFILE as one JSON line {"method","path","body"}.
"""
import datetime
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TASK = "arn:aws:ecs:us-east-1:123456789012:task/dtq/0123456789abcdef"
port, logfile = int(sys.argv[1]), sys.argv[2]
flaky_calls = 0


class Agent(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def record(self, body):
        with open(logfile, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path,
                                "body": body}) + "\n")

    def do_GET(self):
        self.record("")
        if self.path == "/task":
            self.reply(200, {"Cluster": "arn:aws:ecs:us-east-1:123456789012:cluster/dtq",
                             "TaskARN": TASK, "Family": "worker", "Revision": "3",
                             "DesiredStatus": "RUNNING", "KnownStatus": "RUNNING",
                             "AvailabilityZone": "us-east-1a", "LaunchType": "FARGATE",
                             "Containers": []})
        else:
            self.reply(404, {"error": {"Code": "NotFound", "Message": self.path}})

    def do_PUT(self):
        global flaky_calls
        body = self.rfile.read(int(self.headers.get("Content-Length", "0"))).decode()
        self.record(body)
        if self.headers.get("Content-Type") != "application/json":
            self.reply(400, {"error": {"Code": "InvalidRequest", "Message": "content type"}})
            return
        req = json.loads(body)
        if self.path == "/refuse/task-protection/v1/state":
            self.reply(200, {"requestID": "r1", "failure": {
                "Arn": TASK, "Reason": "TASK_NOT_VALID",
                "Detail": "The task is not part of a service"}})
            return
        if self.path == "/flaky/task-protection/v1/state":
            flaky_calls += 1
            if flaky_calls == 1:
                self.reply(503, {"error": {"Code": "ServerException", "Message": "busy"}})
                return
        elif self.path != "/task-protection/v1/state":
            self.reply(404, {"error": {"Code": "NotFound", "Message": self.path}})
            return
        minutes = req.get("ExpiresInMinutes", 120)
        if not isinstance(req.get("ProtectionEnabled"), bool) or not 1 <= minutes <= 2880:
            self.reply(400, {"error": {"Code": "InvalidParameterException",
                                       "Message": "bad request"}})
            return
        prot = {"ProtectionEnabled": req["ProtectionEnabled"], "TaskArn": TASK}
        if req["ProtectionEnabled"]:
            until = datetime.datetime.now(datetime.timezone.utc) + \
                datetime.timedelta(minutes=minutes)
            prot["ExpirationDate"] = until.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.reply(200, {"requestID": "r2", "protection": prot})


ThreadingHTTPServer(("127.0.0.1", port), Agent).serve_forever()
