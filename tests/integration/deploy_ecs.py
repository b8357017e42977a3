"""Checks of deploy/ecs and compose/Dockerfile.* for tests/integration/deploy_ecs.sh.

deploy_ecs.py aws ENDPOINT QUEUE_URL DLQ_URL LEDGER_DSN OUT
    Does what deploy/ecs/README.md tells a user to do, with boto3 against moto_server:
    secrets, IAM roles and policies, log group, ECR repository, VPC; fills the
    placeholders of deploy/ecs/*.json; registers the task definition and creates the
    cluster and service; then runs every static check. Prints TAP lines. Writes
    OUT/worker.env: the container's environment as ECS would give it (secrets resolved).
deploy_ecs.py static TASKDEF
    Only the static checks of a task definition whose placeholders are already filled;
    exit 1 if one fails (the shell test feeds it broken copies: a test must be able to
    fail).
"""

import json
import os
import re
import secrets as pysecrets
import shlex
import socket
import subprocess
import sys

TOP = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
ECS_DIR = os.path.join(TOP, "deploy", "ecs")
DTQ = os.environ.get("DTQ_BIN") or os.path.join(TOP, "build", "dtq")
PLACEHOLDER = re.compile(r"\$\{([A-Z0-9_]+)\}")
FARGATE_MAX_STOP_TIMEOUT = 120
STOP_MARGIN_S = 5

failures = 0


def tap(what, ok, detail=""):
    global failures
    print(("ok - " if ok else "not ok - ") + what, flush=True)
    if not ok:
        failures += 1
        for line in str(detail).splitlines()[:20]:
            print("#   " + line, flush=True)
    return ok


def run(argv, env=None, timeout=20):
    p = subprocess.run(argv, check=False, env=env, capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout + p.stderr


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- what dtq itself says --------------------------------------------------------


def settings_reference():
    """{setting: {"env": [names], "type": t}} from `dtq config --markdown`."""
    rc, out = run([DTQ, "config", "--markdown"])
    if rc != 0:
        raise SystemExit("dtq config --markdown failed: " + out)
    ref = {}
    row = re.compile(r"^\| `(\w+)` \| `[^`]*` \| ([^|]*) \| (\w+) \|")
    for line in out.splitlines():
        m = row.match(line)
        if m:
            ref[m.group(1)] = {"env": re.findall(r"`([A-Z0-9_]+)`", m.group(2)), "type": m.group(3)}
    return ref


def applets():
    _rc, out = run([DTQ, "--help"])
    m = re.search(r"^applets:\n((?:  \S.*\n)+)", out, re.MULTILINE)
    return {line.split()[0] for line in m.group(1).splitlines()} if m else set()


def health_options():
    _rc, out = run([DTQ, "health", "--help"])
    return set(re.findall(r"^  (--[a-z-]+)", out, re.MULTILINE))


def parse_duration_ms(s):
    units = {"ms": 1, "s": 1000, "m": 60000, "h": 3600000, "d": 86400000}
    parts = re.findall(r"(\d+)(ms|s|m|h|d)", s)
    if not parts or "".join(a + b for a, b in parts) != s:
        raise ValueError("not a duration: " + s)
    return sum(int(a) * units[b] for a, b in parts)


def effective_settings(env):
    """`dtq config` run with exactly this environment: (rc, {setting: value}, output)."""
    base = {"PATH": "/usr/bin:/bin"}
    base.update(env)
    rc, out = run([DTQ, "config"], env=base)
    vals = {}
    for line in out.splitlines():
        m = re.match(r"^(\w+)\s+= (.*?)\s+# ", line)
        if m:
            vals[m.group(1)] = m.group(2)
    return rc, vals, out


# --- the Dockerfiles -------------------------------------------------------------


def dockerfile(path):
    """[(INSTRUCTION, rest)] with continuation lines joined and comments dropped."""
    out, cur = [], ""
    with open(path) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not cur and (not line.strip() or line.lstrip().startswith("#")):
                continue
            if line.endswith("\\"):
                cur += line[:-1] + " "
                continue
            cur += line
            ins, _, rest = cur.strip().partition(" ")
            out.append((ins.upper(), rest.strip()))
            cur = ""
    return out


def exec_form(rest):
    try:
        v = json.loads(rest)
    except ValueError:
        return None
    return v if isinstance(v, list) and all(isinstance(x, str) for x in v) else None


def last(ins, name):
    vals = [rest for i, rest in ins if i == name]
    return vals[-1] if vals else None


def probe_exit(argv, env=None):
    """Runs a health probe with the local build in place of the image's path."""
    rc, out = run([DTQ] + argv[1:], env=env, timeout=15)
    return rc, out


def check_dockerfiles(apps, hopts):
    rc, out = run(["make", "-n", "BUILD=build/static", "build/static/dtq"], timeout=60)
    tap("make knows build/static/dtq (the binary `make static` builds)", rc == 0, out)
    with open(os.path.join(TOP, "mk", "static.sh")) as f:
        static_sh = f.read()
    tap("mk/static.sh builds with BUILD=build/static", "BUILD=build/static" in static_sh)

    w = dockerfile(os.path.join(TOP, "compose", "Dockerfile.worker"))
    froms = [rest for i, rest in w if i == "FROM"]
    tap(
        "Dockerfile.worker: FROM the user's image (ARG BASE_IMAGE)",
        froms == ["${BASE_IMAGE}"]
        and ("ARG", "BASE_IMAGE") in w[: [i for i, _ in w].index("FROM")],
        w,
    )
    copies = [rest.split() for i, rest in w if i == "COPY"]
    tap(
        "Dockerfile.worker: COPY build/static/dtq /usr/local/bin/dtq",
        ["build/static/dtq", "/usr/local/bin/dtq"] in copies,
        copies,
    )
    ep = exec_form(last(w, "ENTRYPOINT") or "")
    tap(
        "Dockerfile.worker: ENTRYPOINT is the copied binary's worker applet (exec form)",
        ep == ["/usr/local/bin/dtq", "worker"] and "worker" in apps,
        ep,
    )
    tap("Dockerfile.worker: CMD cleared", exec_form(last(w, "CMD") or "") == [])
    tap("Dockerfile.worker: STOPSIGNAL SIGTERM", last(w, "STOPSIGNAL") == "SIGTERM")
    user = last(w, "USER") or ""
    argdef = dict(rest.split("=", 1) for i, rest in w if i == "ARG" and "=" in rest)
    user = re.sub(r"\$\{(\w+)\}", lambda m: argdef.get(m.group(1), ""), user)
    tap(
        "Dockerfile.worker: runs as a non-root user by default",
        user and user.split(":")[0] not in ("root", "0"),
        user,
    )
    hc = last(w, "HEALTHCHECK") or ""
    m = re.match(r"((?:--\S+\s+)*)CMD\s+(\[.*\])$", hc)
    hargv = exec_form(m.group(2)) if m else None
    tap(
        "Dockerfile.worker: HEALTHCHECK runs `dtq health` in exec form",
        bool(hargv) and hargv[:2] == ["/usr/local/bin/dtq", "health"],
        hc,
    )
    if hargv:
        used = {a for a in hargv[2:] if a.startswith("--")}
        tap("... with options `dtq health --help` lists", used <= hopts, used - hopts)
        hflags = dict(re.findall(r"--(\w[\w-]*)=(\S+)", m.group(1)))
        probe_t = (
            parse_duration_ms(hargv[hargv.index("--timeout") + 1]) if "--timeout" in hargv else 2000
        )
        tap(
            "... the probe's --timeout is below the HEALTHCHECK --timeout",
            probe_t < parse_duration_ms(hflags.get("timeout", "30s")),
            hflags,
        )
        port = free_port()
        rc, out = probe_exit(
            hargv, env={"PATH": "/usr/bin:/bin", "DTQ_HEALTH_ADDR": f"127.0.0.1:{port}"}
        )
        tap("... parses: against nothing it says unhealthy (1), not usage (2)", rc == 1, out)

    d = dockerfile(os.path.join(TOP, "compose", "Dockerfile.dtq"))
    froms = [rest for i, rest in d if i == "FROM"]
    tap("Dockerfile.dtq: final stage FROM scratch", bool(froms) and froms[-1] == "scratch", froms)
    copies = [rest.split() for i, rest in d if i == "COPY"]
    tap(
        "Dockerfile.dtq: COPY build/static/dtq",
        ["build/static/dtq", "/usr/local/bin/dtq"] in copies,
    )
    rc, ref_md = run([DTQ, "config", "--markdown"])
    ca = [c[-1] for c in copies if c[0].startswith("--from=")]
    tap(
        "Dockerfile.dtq: the CA bundle goes where the static binary looks by default",
        ca == ["/etc/ssl/certs/ca-certificates.crt"] and ca[0] in ref_md,
        ca,
    )
    ep = exec_form(last(d, "ENTRYPOINT") or "")
    tap(
        "Dockerfile.dtq: ENTRYPOINT is the binary, non-root user",
        ep == ["/usr/local/bin/dtq"]
        and (last(d, "USER") or "0").split(":")[0] not in ("0", "root"),
    )
    for name in ("Dockerfile.worker", "Dockerfile.dtq"):
        with open(os.path.join(TOP, "compose", name + ".dockerignore")) as f:
            rules = [l.strip() for l in f if l.strip() and not l.startswith("#")]
        tap(
            name + ".dockerignore: context is only the static binary",
            rules == ["*", "!build/static/dtq"],
            rules,
        )


# --- the task definition ---------------------------------------------------------


def container(td):
    return td["containerDefinitions"][0]


def static_taskdef_checks(td, ref):
    """Checks of a filled task definition; returns nothing, prints TAP."""
    c = container(td)
    env = {e["name"]: e["value"] for e in c.get("environment", [])}
    sec = {s["name"]: s["valueFrom"] for s in c.get("secrets", [])}
    known = {n for s in ref.values() for n in s["env"]}
    secret_env = {n for s in ref.values() if s["type"] in ("secret", "dsn") for n in s["env"]}
    bad = sorted(n for n in list(env) + list(sec) if n.startswith("DTQ_") and n not in known)
    tap("every DTQ_* name in environment and secrets is a dtq setting", not bad, bad)
    leaked = sorted(secret_env & set(env))
    tap("no secret or DSN setting in environment (only in secrets)", not leaked, leaked)
    tap(
        "ledger DSN, signing key and Dagster's storage URL come from secrets",
        {"DTQ_LEDGER_DSN", "DTQ_SIGNING_KEY", "DAGSTER_PG_URL"} <= set(sec),
        sorted(sec),
    )
    creds = [n for n, v in env.items() if re.search(r"://[^/@\s]*:[^/@\s]*@", v)]
    tap("no environment value carries a password in a URL", not creds, creds)
    both = sorted(set(env) & set(sec))
    tap("no name in both environment and secrets", not both, both)
    required = ("queue_url", "dlq_url", "ledger_dsn")
    missing = [r for r in required if not set(ref[r]["env"]) & (set(env) | set(sec))]
    tap("every required setting (queue_url, dlq_url, ledger_dsn) is given", not missing, missing)
    injected = sorted(n for n in env if n.startswith(("ECS_", "AWS_CONTAINER_")))
    tap(
        "nothing ECS injects itself (ECS_AGENT_URI, metadata, credentials) is set",
        not injected,
        injected,
    )

    rc, vals, out = effective_settings(env)
    tap("dtq accepts the environment's values (`dtq config` exits 0)", rc == 0, out)
    try:
        grace = parse_duration_ms(vals["shutdown_grace"])
        kill = parse_duration_ms(vals["kill_grace"])
    except (KeyError, ValueError) as e:
        tap("shutdown_grace and kill_grace are readable", False, e)
        return
    stop = c.get("stopTimeout", 30)
    tap(
        f"stopTimeout {stop}s >= shutdown_grace {grace / 1000}s + kill_grace {kill / 1000}s + {STOP_MARGIN_S}s margin",
        stop * 1000 >= grace + kill + STOP_MARGIN_S * 1000,
    )
    default_grace = parse_duration_ms(effective_settings({})[1]["shutdown_grace"])
    tap("stopTimeout > the default shutdown_grace", stop * 1000 > default_grace)
    tap("stopTimeout within Fargate's limit (120 s)", 0 < stop <= FARGATE_MAX_STOP_TIMEOUT, stop)

    allow = vals.get("env_allow", "").split(",")
    tap(
        "env_allow passes Dagster's storage variables (DAGSTER_PG_*, DAGSTER_HOME)",
        "DAGSTER_PG_*" in allow and "DAGSTER_HOME" in allow,
        allow,
    )
    tap(
        "env_allow passes what run workers' executor-shim needs (docs/dagster.md)",
        {"DTQ_QUEUE_URL", "DTQ_LEDGER_DSN", "AWS_*"} <= set(allow),
        allow,
    )
    patterns = [a for a in allow if a.endswith("*") and "DTQ_".startswith(a[:-1])]
    tap("env_allow names DTQ_* settings one by one, never by a pattern", not patterns, patterns)
    other_secret = [n for n in sec if not n.startswith("DTQ_")]
    passed = [
        n
        for n in other_secret
        if not any(n == a or (a.endswith("*") and n.startswith(a[:-1])) for a in allow)
    ]
    tap("every non-dtq secret reaches the task processes through env_allow", not passed, passed)

    hc = c.get("healthCheck", {})
    cmd = hc.get("command", [])
    tap(
        "healthCheck runs `dtq health` (CMD form, the image's path)",
        cmd[:3] == ["CMD", "/usr/local/bin/dtq", "health"],
        cmd,
    )
    hopts = health_options()
    used = {a for a in cmd[3:] if a.startswith("--")}
    tap("healthCheck options are `dtq health` options", used <= hopts, used - hopts)
    url = (
        cmd[cmd.index("--url") + 1]
        if "--url" in cmd
        else "http://{}/readyz".format(vals.get("health_addr"))
    )
    tap(
        "healthCheck probes the worker's own health_addr",
        url.startswith("http://{}/".format(vals.get("health_addr"))),
        (url, vals.get("health_addr")),
    )
    probe_t = parse_duration_ms(cmd[cmd.index("--timeout") + 1]) if "--timeout" in cmd else 2000
    tap(
        "healthCheck: the probe's --timeout is below ECS's timeout",
        probe_t < hc.get("timeout", 5) * 1000,
        (probe_t, hc.get("timeout")),
    )
    port = free_port()
    argv = [a.replace(vals.get("health_addr", "-"), f"127.0.0.1:{port}") for a in cmd[1:]]
    rc, out = probe_exit(argv, env={"PATH": "/usr/bin:/bin"})
    tap("healthCheck parses: against nothing it says unhealthy (1), not usage (2)", rc == 1, out)

    lc = c.get("logConfiguration", {})
    tap(
        "logs go to CloudWatch (awslogs with group, region, stream prefix)",
        lc.get("logDriver") == "awslogs"
        and {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"}
        <= set(lc.get("options", {})),
        lc,
    )
    tap(
        "Fargate-compatible (awsvpc, FARGATE, task-level cpu and memory)",
        td.get("networkMode") == "awsvpc"
        and "FARGATE" in td.get("requiresCompatibilities", [])
        and td.get("cpu")
        and td.get("memory")
        and c.get("essential") is True,
    )


# --- placeholders ----------------------------------------------------------------


def readme_placeholders():
    with open(os.path.join(ECS_DIR, "README.md")) as f:
        cells = re.findall(r"^\| ((?:`\$\{[A-Z0-9_]+\}`(?:, )?)+) \|", f.read(), re.MULTILINE)
    return {n for cell in cells for n in PLACEHOLDER.findall(cell)}


def file_placeholders():
    names = {}
    for fn in sorted(os.listdir(ECS_DIR)):
        if fn.endswith(".json"):
            with open(os.path.join(ECS_DIR, fn)) as f:
                names[fn] = set(PLACEHOLDER.findall(f.read()))
    return names


def fill(text, values):
    missing = sorted(set(PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise KeyError("no value for " + ", ".join(missing))
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], text)


def load_filled(fn, values):
    with open(os.path.join(ECS_DIR, fn)) as f:
        return json.loads(fill(f.read(), values))


# --- against moto ----------------------------------------------------------------


def aws(endpoint, queue_url, dlq_url, ledger_dsn, out):
    import boto3

    kw = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    sqs, iam, ecs = boto3.client("sqs", **kw), boto3.client("iam", **kw), boto3.client("ecs", **kw)
    sm, logs, ecr, ec2 = (boto3.client(s, **kw) for s in ("secretsmanager", "logs", "ecr", "ec2"))
    sfx = str(os.getpid())
    ref = settings_reference()
    apps, hopts = applets(), health_options()

    check_dockerfiles(apps, hopts)

    per_file = file_placeholders()
    used = set().union(*per_file.values())
    documented = readme_placeholders()
    tap(
        "every placeholder of deploy/ecs/*.json is in the README's table",
        used <= documented,
        sorted(used - documented),
    )
    tap(
        "the README's table names no placeholder the files lack",
        documented <= used,
        sorted(documented - used),
    )

    qarn = lambda u: sqs.get_queue_attributes(QueueUrl=u, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.1.0/24")["Subnet"]["SubnetId"]
    sg = ec2.create_security_group(
        GroupName="dtq-worker-" + sfx, Description="dtq workers", VpcId=vpc
    )["GroupId"]
    signing_key = pysecrets.token_hex(32)
    secret_values = {
        "LEDGER_DSN_SECRET_ARN": ledger_dsn,
        "SIGNING_KEY_SECRET_ARN": signing_key,
        "DAGSTER_PG_URL_SECRET_ARN": "postgresql+psycopg2://dagster:pw@db.internal:5432/dagster",
    }
    values = {
        "AWS_REGION": "us-east-1",
        "AWS_ACCOUNT_ID": boto3.client("sts", **kw).get_caller_identity()["Account"],
        "CLUSTER": "dtq-" + sfx,
        "QUEUE_URL": queue_url,
        "DLQ_URL": dlq_url,
        "QUEUE_ARN": qarn(queue_url),
        "DLQ_ARN": qarn(dlq_url),
        "LOG_GROUP": "/ecs/dtq-worker-" + sfx,
        "DAGSTER_HOME": "/opt/dagster/dagster_home",
        "SUBNET_ID": subnet,
        "SECURITY_GROUP_ID": sg,
    }
    for k, v in secret_values.items():
        values[k] = sm.create_secret(Name=f"dtq/{k.lower()}-{sfx}", SecretString=v)["ARN"]
    repo = ecr.create_repository(repositoryName="dagster-code-" + sfx)["repository"]
    values["ECR_REPOSITORY_ARN"] = repo["repositoryArn"]
    values["WORKER_IMAGE"] = repo["repositoryUri"] + ":dtq"
    logs.create_log_group(logGroupName=values["LOG_GROUP"])

    trust = json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Service": "ecs-tasks.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                }
            ],
        }
    )
    for role, key in (("task", "TASK_ROLE_ARN"), ("execution", "EXECUTION_ROLE_ARN")):
        values[key] = iam.create_role(
            RoleName=f"dtq-worker-{role}-{sfx}", AssumeRolePolicyDocument=trust
        )["Role"]["Arn"]
    tap("every placeholder has a value", used <= set(values), sorted(used - set(values)))

    # The IAM policies: valid for IAM (moto validates the grammar), and least privilege.
    for fn, role in (
        ("iam-task-role-policy.json", "task"),
        ("iam-execution-role-policy.json", "execution"),
    ):
        try:
            doc = load_filled(fn, values)
            arn = iam.create_policy(
                PolicyName=f"dtq-worker-{role}-{sfx}", PolicyDocument=json.dumps(doc)
            )["Policy"]["Arn"]
            iam.attach_role_policy(RoleName=f"dtq-worker-{role}-{sfx}", PolicyArn=arn)
            tap(f"IAM accepts {fn} and it attaches to the {role} role", True)
        except Exception as e:  # noqa: BLE001 - any refusal is the failure reported
            tap(f"IAM accepts {fn} and it attaches to the {role} role", False, e)
    task_pol = load_filled("iam-task-role-policy.json", values)
    grants = {}
    for st in task_pol["Statement"]:
        tap(
            "task role: statement {} allows, names resources, no wildcard action".format(
                st.get("Sid")
            ),
            st["Effect"] == "Allow"
            and st["Resource"] != "*"
            and not any("*" in a for a in st["Action"]),
            st,
        )
        res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for r in res:
            grants.setdefault(r, set()).update(st["Action"])
    tap(
        "task role on the queue: receive, delete, change visibility, attributes, send",
        grants.get(values["QUEUE_ARN"])
        == {
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:ChangeMessageVisibility",
            "sqs:GetQueueAttributes",
            "sqs:SendMessage",
        },
        grants.get(values["QUEUE_ARN"]),
    )
    tap(
        "task role on the DLQ: send and attributes only",
        grants.get(values["DLQ_ARN"]) == {"sqs:SendMessage", "sqs:GetQueueAttributes"},
        grants.get(values["DLQ_ARN"]),
    )
    task_arn = "arn:aws:ecs:us-east-1:{}:task/{}/*".format(
        values["AWS_ACCOUNT_ID"], values["CLUSTER"]
    )
    tap(
        "task role: ecs:UpdateTaskProtection on the cluster's tasks only (the agent uses the "
        "task role)",
        grants.get(task_arn) == {"ecs:UpdateTaskProtection"},
        grants,
    )
    tap(
        "task role: nothing else",
        set(grants) == {values["QUEUE_ARN"], values["DLQ_ARN"], task_arn},
        sorted(grants),
    )
    ex = load_filled("iam-execution-role-policy.json", values)
    ex_grants = {}
    for st in ex["Statement"]:
        res = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
        for a in st["Action"]:
            ex_grants.setdefault(a, set()).update(res)
    tap(
        "execution role: reads exactly the three secrets",
        ex_grants.get("secretsmanager:GetSecretValue") == {values[k] for k in secret_values},
        ex_grants.get("secretsmanager:GetSecretValue"),
    )
    tap(
        "execution role: writes logs to its log group only",
        {a for a in ex_grants if a.startswith("logs:")}
        == {"logs:CreateLogStream", "logs:PutLogEvents"}
        and all(
            r.startswith(
                "arn:aws:logs:us-east-1:{}:log-group:{}:".format(
                    values["AWS_ACCOUNT_ID"], values["LOG_GROUP"]
                )
            )
            for a in ("logs:CreateLogStream", "logs:PutLogEvents")
            for r in ex_grants[a]
        ),
        ex_grants,
    )
    star = sorted(a for a, r in ex_grants.items() if "*" in r)
    tap(
        "execution role: only ecr:GetAuthorizationToken on *",
        star == ["ecr:GetAuthorizationToken"],
        star,
    )

    # The task definition: registered as given.
    td = load_filled("worker-task-definition.json", values)
    try:
        got = ecs.register_task_definition(**td)["taskDefinition"]
        tap("ECS registers worker-task-definition.json", True)
    except Exception as e:  # noqa: BLE001
        tap("ECS registers worker-task-definition.json", False, e)
        got = None
    if got:
        d = ecs.describe_task_definition(taskDefinition=got["taskDefinitionArn"])["taskDefinition"]
        gc, wc = d["containerDefinitions"][0], container(td)
        for key in ("stopTimeout", "healthCheck", "secrets", "environment", "logConfiguration"):
            tap(
                f"describe_task_definition returns {key} as given",
                gc.get(key) == wc.get(key),
                f"got {gc.get(key)!r}\nwanted {wc.get(key)!r}",
            )
        tap(
            "... and the roles, cpu, memory, network mode",
            all(
                d.get(k) == td[k]
                for k in ("taskRoleArn", "executionRoleArn", "cpu", "memory", "networkMode")
            ),
        )
    static_taskdef_checks(td, ref)

    # The service.
    svc = load_filled("worker-service.json", values)
    try:
        ecs.create_cluster(
            clusterName=values["CLUSTER"], capacityProviders=["FARGATE", "FARGATE_SPOT"]
        )
        s = ecs.create_service(**svc)["service"]
        tap("ECS creates the service from worker-service.json", s["status"] == "ACTIVE", s)
        d = ecs.describe_services(cluster=values["CLUSTER"], services=[svc["serviceName"]])
        s = d["services"][0]
        # moto keeps no deploymentConfiguration nor enableExecuteCommand: checked below.
        tap(
            "describe_services: the task definition, desired count, network configuration",
            s["taskDefinition"].endswith(f":task-definition/dtq-worker:{got['revision']}")
            and s["desiredCount"] == svc["desiredCount"]
            and s.get("networkConfiguration") == svc["networkConfiguration"],
            s,
        )
    except Exception as e:  # noqa: BLE001
        tap("ECS creates the service from worker-service.json", False, e)
    dc = svc["deploymentConfiguration"]
    tap(
        "worker-service.json: deployments start new workers before stopping old ones, "
        "circuit breaker with rollback",
        dc["minimumHealthyPercent"] == 100
        and dc["maximumPercent"] >= 200
        and dc["deploymentCircuitBreaker"] == {"enable": True, "rollback": True},
        dc,
    )
    tap(
        "worker-service.json: execute command off, no public IP",
        svc["enableExecuteCommand"] is False
        and svc["networkConfiguration"]["awsvpcConfiguration"]["assignPublicIp"] == "DISABLED",
    )

    # What the container gets: the environment, plus secrets as ECS injects them.
    c = container(td)
    with open(os.path.join(out, "worker.env"), "w") as f:
        for e in c["environment"]:
            f.write("{}={}\n".format(e["name"], e["value"]))
        for s in c["secrets"]:
            f.write(
                "{}={}\n".format(
                    s["name"], sm.get_secret_value(SecretId=s["valueFrom"])["SecretString"]
                )
            )
    with open(os.path.join(out, "healthcheck.argv"), "w") as f:
        f.write(shlex.join(c["healthCheck"]["command"][1:]) + "\n")
    with open(os.path.join(out, "taskdef.json"), "w") as f:
        json.dump(td, f, indent=2)
    with open(os.path.join(out, "stop_timeout"), "w") as f:
        f.write(f"{c['stopTimeout']}\n")


def main():
    if len(sys.argv) == 7 and sys.argv[1] == "aws":
        aws(*sys.argv[2:])
    elif len(sys.argv) == 3 and sys.argv[1] == "static":
        with open(sys.argv[2]) as f:
            static_taskdef_checks(json.load(f), settings_reference())
    else:
        sys.exit(__doc__)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
