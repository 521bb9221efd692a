"""The cluster definitions under docker/ agree with Ray, with pyproject.toml, with the sweep scripts and with each
other, and keep secrets out of files. No Docker engine, cloud or Kubernetes runs here: these read the files.

Every check is a function that returns its problems, so the tests can also show that a broken copy is caught.
"""
import fnmatch
import importlib
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.specifiers import SpecifierSet

from sweeps import cli
from sweeps.study_runner import build_parser

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
CLOUD = DOCKER / "cluster.yaml"
ONPREM = DOCKER / "cluster-onprem.yaml"
RAYJOB = DOCKER / "rayjob.yaml"
CLUSTER_YAMLS = [CLOUD, ONPREM]
# where each `ray up` cluster keeps what every node must see (NFS/EFS)
SHARED_ROOT = {CLOUD: "/shared", ONPREM: "/mnt/shared"}
RAY_IMAGE = re.compile(r"rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-py(?P<major>\d)(?P<minor>\d+)-(?:cpu|gpu)")


def load_pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def pinned_version(requirements: list[str], name: str) -> str:
    pins = [m.group(1) for r in requirements if (m := re.fullmatch(rf"{name}(?:\[[^\]]*\])?==(\S+)", r.strip()))]
    assert len(pins) == 1, f"expected one {name}==X pin in {requirements}"
    return pins[0]


def ray_pin() -> str:
    return pinned_version(load_pyproject()["project"]["dependencies"], "ray")


def load(path: Path):
    return yaml.safe_load(path.read_text())


def env_assignments(text: str) -> dict[str, str]:
    """KEY=VALUE pairs of `export` statements and `--env` options in shell text."""
    found = {}
    for token in shlex.split(text.replace(";", " ; "), posix=True):
        match = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(\S*)", token)
        if match:
            found[match.group(1)] = match.group(2)
    return found


# ---------------------------------------------------------------- ray up: cloud and on-prem cluster YAMLs


def ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def cluster_yaml_problems(path: Path) -> list[str]:
    """What `ray up` would reject: Ray's JSON schema, then Ray's own preparation and validation of the config (the
    offline part of `ray up`: defaults merged, node types checked, the local provider's rules)."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = load(path)
    try:
        jsonschema.validate(config, ray_schema())
    except jsonschema.ValidationError as error:
        return [f"{path.name}: schema: {error.message} at {list(error.absolute_path)}"]
    try:
        validate_config(prepare_config(config))
    except Exception as error:  # among them click's abort, which the local provider's rules raise
        return [f"{path.name}: {type(error).__name__}: {error}"]
    return []


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: p.name)
def test_every_cluster_yaml_satisfies_rays_own_schema(path):
    assert cluster_yaml_problems(path) == []


@pytest.mark.parametrize("original, broken", [
    ("idle_timeout_minutes: 10\n", "idle_timeout_minutes: 10\nworker_start_commands: []\n"),
    ("resources: {CPU: 8, GPU: 1}", "resources: {CPU: 8, GPU: 0.25}"),
    ("    min_workers: 0\n    max_workers: 8\n", "    min_workers: 9\n    max_workers: 9\n"),
], ids=["misspelt-key", "fractional-gpu-resource", "min-workers-above-cluster-max"])
def test_schema_check_catches_a_broken_cloud_yaml(tmp_path, original, broken):
    text = CLOUD.read_text()
    assert text.count(original) == 1
    copy = tmp_path / CLOUD.name
    copy.write_text(text.replace(original, broken))
    assert cluster_yaml_problems(copy)


def test_onprem_yaml_leaves_node_types_to_the_local_provider(tmp_path):
    config = load(ONPREM)
    assert config["provider"]["type"] == "local"
    assert config["provider"]["head_ip"] and isinstance(config["provider"]["worker_ips"], list)
    assert "available_node_types" not in config and "head_node_type" not in config
    # the check that guards it: Ray refuses node types under the local provider
    copy = tmp_path / ONPREM.name
    copy.write_text(ONPREM.read_text() + "available_node_types:\n  x: {resources: {}, node_config: {}}\n")
    assert cluster_yaml_problems(copy)


def start_commands(config: dict) -> list[str]:
    return [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if "ray start" in c]


def token_auth_problems(config: dict) -> list[str]:
    """Every `ray start` runs with token auth, reading the token file that `ray up` copies to the node from the
    secrets folder; no token value is written in the YAML."""
    problems = []
    mounts = {m.replace("$HOME", "~"): local for m, local in config.get("file_mounts", {}).items()}
    commands = start_commands(config)
    if len(commands) < 2:
        problems.append("expected a `ray start` for the head and one for the workers")
    for command in commands:
        env = env_assignments(command)
        if env.get("RAY_AUTH_MODE") != "token":
            problems.append(f"no RAY_AUTH_MODE=token before: {command}")
        token_path = env.get("RAY_AUTH_TOKEN_PATH", "").replace("$HOME", "~")
        if mounts.get(token_path) != "docker/secrets/ray_token.txt":
            problems.append(f"RAY_AUTH_TOKEN_PATH {token_path!r} is not the token file_mounts copies: {command}")
    if re.search(r"RAY_AUTH_TOKEN\s*[=:]", yaml.safe_dump(config)):
        problems.append("a literal RAY_AUTH_TOKEN value")
    return problems


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: p.name)
def test_cluster_yamls_start_every_node_with_token_auth(path):
    config = load(path)
    assert token_auth_problems(config) == []
    broken = load(path)
    broken["worker_start_ray_commands"] = [c.replace("RAY_AUTH_MODE=token", "RAY_AUTH_MODE=disabled")
                                           for c in broken["worker_start_ray_commands"]]
    assert token_auth_problems(broken)


def driver_environment(path: Path) -> dict[str, str]:
    """The environment the driver started by `ray submit` on the head sees."""
    config = load(path)
    if "docker" in config:  # the container's environment, which `docker exec` passes on
        options = config["docker"].get("run_options", []) + config["docker"].get("head_run_options", [])
        return env_assignments(" ".join(options))
    # a login shell on the host: the environment file the setup commands write
    return env_assignments("\n".join(config["setup_commands"] + config.get("head_setup_commands", [])))


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: p.name)
def test_cluster_yamls_point_the_sweep_at_shared_storage_and_a_tracking_server(path):
    env, root, config = driver_environment(path), SHARED_ROOT[path], load(path)
    # the sweep's CLI reads these names, so `ray submit … -- --preset paper --address auto` needs no paths
    for name in (cli.STORAGE_ENV, cli.OUT_ENV):
        assert env.get(name, "").startswith(root + "/"), f"{name}={env.get(name)} is not under {root}"
    assert env.get("MLFLOW_TRACKING_URI", "").startswith("http://"), "MLflow must be a server, not a file on NFS"
    text = yaml.safe_dump(config)
    if "docker" in config:
        # the shared storage is mounted on every host (head: global list, workers: their own) and into containers
        assert f"-v {root}:{root}" in config["docker"]["run_options"]
        worker_init = config["available_node_types"]["gpu_worker"]["initialization_commands"]
        for commands in (config["initialization_commands"], worker_init):
            assert any("mount -t nfs4" in c and re.search(rf":/\s+{root}\b", c) for c in commands), commands
    else:
        assert f"test -w {root}" in text  # setup fails, naming the path, when the NFS export is missing


# ---------------------------------------------------------------- the image


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
            for line in joined.splitlines() if line.strip()]


def base_image_problems(text: str, pyproject: dict) -> list[str]:
    problems = []
    instructions = dockerfile_instructions(text)
    default = next((args.split("=", 1)[1] for op, args in instructions
                    if op == "ARG" and args.startswith("RAY_IMAGE=")), None)
    if default is None or not any(op == "FROM" and args.strip() == "${RAY_IMAGE}" for op, args in instructions):
        return ["the image must be FROM ${RAY_IMAGE} with a default ARG RAY_IMAGE=rayproject/ray:…"]
    pin = pinned_version(pyproject["project"]["dependencies"], "ray")
    requires_python = SpecifierSet(pyproject["project"]["requires-python"])
    for match in RAY_IMAGE.finditer(text):  # the default and the GPU build named in the comments
        if match.group("ray") != pin:
            problems.append(f"{match.group(0)}: Ray {match.group('ray')} but pyproject pins ray=={pin}")
        python = f"{match.group('major')}.{match.group('minor')}"
        if python not in requires_python:
            problems.append(f"{match.group(0)}: Python {python} is outside requires-python {requires_python}")
    if not RAY_IMAGE.fullmatch(default):
        problems.append(f"ARG RAY_IMAGE={default} is not a rayproject/ray:X.Y.Z-pyNN-cpu|gpu tag")
    return problems


def pip_install_problems(text: str, pyproject: dict) -> list[str]:
    """The image installs the project with the cluster extra and pins nothing itself: pyproject.toml is the one
    place versions are written (and requirements-image-assets.txt for the two data packages installed without
    their dependencies, read by the Makefile and the image alike)."""
    problems = []
    installs = []
    for op, args in dockerfile_instructions(text):
        for command in re.split(r"&&|;", args) if op == "RUN" else []:
            if "pip install" in command:
                installs.append(command)
                tokens = shlex.split(command.split("pip install", 1)[1])
                # a requirements file (-r FILE) is a file of pins, not a package named here
                files = {after for before, after in zip(tokens, tokens[1:], strict=False) if before == "-r"}
                named = [t for t in tokens if not t.startswith(("-", "$", ".")) and not t.endswith("}")
                         and t not in files]
                if named:
                    problems.append(f"pip installs {named} by name: versions belong in pyproject.toml")
                if "==" in command:
                    problems.append(f"a pin in the Dockerfile: {command.strip()}")
    if not any(".[cluster]" in shlex.split(c) for c in installs):
        problems.append('no `pip install ".[cluster]"`')
    cluster_extra = pyproject["project"]["optional-dependencies"].get("cluster", [])
    if pinned_version(cluster_extra, "ray") != pinned_version(pyproject["project"]["dependencies"], "ray"):
        problems.append("the cluster extra pins another Ray than the dependencies")
    return problems


def test_dockerfile_base_image_matches_pyproject_ray_pin():
    text, pyproject = DOCKERFILE.read_text(), load_pyproject()
    assert base_image_problems(text, pyproject) == []
    assert pip_install_problems(text, pyproject) == []
    # and the checks bite
    assert base_image_problems(text.replace("ray:2.60.0-py311-cpu", "ray:2.59.0-py311-cpu"), pyproject)
    assert base_image_problems(text.replace("py311-cpu", "py39-cpu"), pyproject)
    assert pip_install_problems(text.replace('".[cluster]"', '".[cluster]" "mlflow==3.17.2"'), pyproject)
    assert pip_install_problems(text.replace('".[cluster]"', '"."'), pyproject)


def final_user(text: str) -> str | None:
    users = [args.strip() for op, args in dockerfile_instructions(text) if op == "USER"]
    return users[-1] if users else None


def test_image_runs_as_non_root_user():
    text = DOCKERFILE.read_text()
    assert final_user(text) == "ray"
    instructions = dockerfile_instructions(text)
    last_user = max(i for i, (op, _) in enumerate(instructions) if op == "USER")
    # nothing after the last USER runs as root, and the project's files belong to ray
    for op, args in instructions[last_user:]:
        if op in ("COPY", "ADD"):
            assert "--chown=ray" in args, f"{op} {args}: files would belong to root"
    assert ("WORKDIR", "/home/ray/priorsweep") in instructions
    # no compose service that runs the image turns it back into root
    for name, service in load(COMPOSE)["services"].items():
        if service.get("image", "").startswith("priorsweep"):
            assert str(service.get("user", "ray")).split(":")[0] not in ("root", "0"), name
    assert final_user(text + "\nUSER root\n") == "root"


def dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last pattern that matches the path or one of its parent folders decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    excluded = False
    for pattern in patterns:
        negated, body = pattern.startswith("!"), pattern.lstrip("!")
        bodies = [body, body[3:]] if body.startswith("**/") else [body]
        if any(fnmatch.fnmatchcase(c, b) for c in candidates for b in bodies):
            excluded = not negated
    return excluded


def test_image_gets_the_sources_and_nothing_else():
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.lstrip().startswith("#")]
    assert ("COPY", "--chown=ray:users . .") in dockerfile_instructions(DOCKERFILE.read_text())
    packages = [p.rstrip("*") for p in load_pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]]
    for path in ["pyproject.toml", "README.md", "requirements-image-assets.txt",
                 *(f"{p}/__init__.py" for p in packages)]:
        assert not dockerignore_excludes(patterns, path), f"{path} would be missing from the image"
    for path in [".venv/bin/python", "results/bias_grid/x/results.parquet", "mlruns/0/meta.yaml", "mlflow.db",
                 ".git/HEAD", "benchmarks/data/x.bin", "docker/secrets/ray_token.txt", "sweeps/__pycache__/a.pyc",
                 "mlartifacts/1/a"]:
        assert dockerignore_excludes(patterns, path), f"{path} would be copied into the image"
    assert not dockerignore_excludes(patterns[:1] + ["!.venv"], ".venv/bin/python")  # the matcher can say no


# ---------------------------------------------------------------- compose: one machine, a whole cluster


SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|_KEY$|CREDENTIAL", re.IGNORECASE)


def compose_secret_problems(compose: dict) -> list[str]:
    """Every secret is a file under docker/secrets/ that git ignores, handed to services as a compose secret;
    environment variables only ever point at those files, and no URI carries a password."""
    problems = []
    gitignore = [line.strip() for line in (REPO / ".gitignore").read_text().splitlines() if line.strip()]
    declared = compose.get("secrets", {})
    for name, secret in declared.items():
        if set(secret) != {"file"} or not secret["file"].startswith("./secrets/"):
            problems.append(f"secret {name} is not a file under docker/secrets/: {secret}")
        elif not any(fnmatch.fnmatchcase("docker/" + secret["file"][2:], g) for g in gitignore):
            problems.append(f"secret {name}: {secret['file']} is not git-ignored")
    for service_name, service in compose["services"].items():
        mounted = [s if isinstance(s, str) else s["source"] for s in service.get("secrets", [])]
        problems += [f"{service_name} uses undeclared secret {s}" for s in mounted if s not in declared]
        environment = service.get("environment", {})
        if isinstance(environment, list):
            environment = dict(item.split("=", 1) for item in environment)
        for key, value in environment.items():
            if not SECRET_NAME.search(key):
                continue
            target = re.fullmatch(r"/run/secrets/(\w+)", str(value))
            if not (key.endswith(("_FILE", "_PATH")) and target and target.group(1) in mounted):
                problems.append(f"{service_name}: {key} must name a file of a mounted secret, not a value")
    for text in strings_in(compose):
        for userinfo in re.findall(r"://[^/\s:@]+:([^@\s]+)@", text):
            if not userinfo.startswith("$"):
                problems.append(f"a password in a URI: {text}")
    return problems


def strings_in(node) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings_in(k) + strings_in(v)]
    if isinstance(node, list):
        return [s for item in node for s in strings_in(item)]
    return [node] if isinstance(node, str) else []


def test_compose_keeps_secrets_out_of_yaml():
    assert compose_secret_problems(load(COMPOSE)) == []
    text = COMPOSE.read_text()
    leaks = [
        text.replace("POSTGRES_PASSWORD_FILE: /run/secrets/db_password", "POSTGRES_PASSWORD: hunter2"),
        text.replace("RAY_AUTH_TOKEN_PATH: /run/secrets/ray_token", "RAY_AUTH_TOKEN: 0123abcd"),
        text.replace("postgresql+psycopg2://mlflow@", "postgresql+psycopg2://mlflow:hunter2@"),
        text.replace("file: ./secrets/ray_token.txt", "file: ./ray_token.txt"),
    ]
    for leaky in leaks:
        assert leaky != text
        assert compose_secret_problems(yaml.safe_load(leaky)), leaky


def test_compose_mlflow_asks_for_a_login_whose_password_is_a_secret():
    """MLflow behind its basic-auth app: the admin password comes from the mlflow_password secret file (exported in
    the server's shell, never in YAML or the container's environment), the user store lives on a volume, and the
    head, where drivers run, logs in through ~/.mlflow/credentials written from the same secret."""
    compose = load(COMPOSE)
    mlflow, head = compose["services"]["mlflow"], compose["services"]["ray-head"]
    server = mlflow["command"][-1]
    assert "--app-name basic-auth" in server and "mlflow_password" in mlflow["secrets"]
    assert 'MLFLOW_AUTH_ADMIN_PASSWORD="$$(cat /run/secrets/mlflow_password)"' in server
    assert "MLFLOW_AUTH_CONFIG_PATH=/mlauth/" in server and "mlauth:/mlauth" in mlflow["volumes"]
    assert "default_permission = READ" in server  # a user without a grant reads, never edits
    assert not any("MLFLOW" in key and "PASSWORD" in key for key in mlflow.get("environment", {}))
    login = head["command"][-1]
    assert "mlflow_password" in head["secrets"] and "~/.mlflow/credentials" in login and "umask 077" in login
    assert "/mlauth" in DOCKERFILE.read_text()  # the volume's mount point is the server user's


def published_ports(compose: dict) -> list[tuple[str, str | None]]:
    """(service, host address) of every published port; None: all interfaces."""
    found = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if isinstance(port, dict):
                found.append((name, port.get("host_ip")))
            else:
                parts = str(port).rsplit(":", 2)
                found.append((name, parts[0] if len(parts) == 3 else None))
        if service.get("network_mode") == "host":
            found.append((name, "host network"))
    return found


def test_compose_publishes_services_on_loopback_only():
    ports = published_ports(load(COMPOSE))
    assert {name for name, _ in ports} == {"mlflow", "ray-head"}  # the UI and the dashboard; PostgreSQL stays inside
    assert all(address == "127.0.0.1" for _, address in ports), ports
    assert ("ray-head", None) in published_ports(yaml.safe_load(
        COMPOSE.read_text().replace('"127.0.0.1:8265:8265"', '"8265:8265"')))


def test_compose_cluster_shares_storage_and_tracking():
    compose = load(COMPOSE)
    services = compose["services"]
    head, worker, mlflow = services["ray-head"], services["ray-worker"], services["mlflow"]
    for name, service in services.items():
        depends = service.get("depends_on", [])
        assert set(depends) <= set(services), f"{name} depends on a service that does not exist"
    # one named volume, mounted at the same place on head and workers, holds storage and results
    assert head["volumes"] == worker["volumes"]
    volume, mount = head["volumes"][0].split(":")[:2]
    assert volume in compose["volumes"]
    for service in (head, worker):
        env = service["environment"]
        assert env[cli.STORAGE_ENV].startswith(mount + "/") and env[cli.OUT_ENV].startswith(mount + "/")
        assert env["RAY_AUTH_MODE"] == "token"
        assert env["RAY_AUTH_TOKEN_PATH"] == "/run/secrets/ray_token" and "ray_token" in service["secrets"]
    assert head["environment"] == worker["environment"]
    # the tracking URI names the mlflow service on the port it listens on, and MLflow accepts that Host header
    uri = re.fullmatch(r"http://([\w-]+):(\d+)", head["environment"]["MLFLOW_TRACKING_URI"])
    assert uri and uri.group(1) == "mlflow"
    server = " ".join(mlflow["command"])
    assert f"--port {uri.group(2)}" in server
    allowed = re.search(r"--allowed-hosts (\S+)", server).group(1).split(",")
    assert f"{uri.group(1)}:{uri.group(2)}" in allowed
    # workers join the head's GCS port under its service name, and there is more than one of them
    head_port = re.search(r"--port\D+(\d+)", " ".join(head["command"])).group(1)
    assert f"ray-head:{head_port}" in worker["command"]
    assert worker["deploy"]["replicas"] >= 2


# ---------------------------------------------------------------- KubeRay RayJob


def rayjob_documents() -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(RAYJOB.read_text()) if doc}


def ray_containers(job: dict) -> dict[str, dict]:
    cluster = job["spec"]["rayClusterSpec"]
    containers = {"head": cluster["headGroupSpec"]["template"]["spec"]["containers"][0],
                  "submitter": job["spec"]["submitterPodTemplate"]["spec"]["containers"][0],
                  "autoscaler": cluster.get("autoscalerOptions", {})}
    for group in cluster["workerGroupSpecs"]:
        containers[f"worker:{group['groupName']}"] = group["template"]["spec"]["containers"][0]
    return containers


def test_rayjob_runs_a_sweep_and_shuts_down():
    job = rayjob_documents()["RayJob"]
    spec = job["spec"]
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert spec["shutdownAfterJobFinishes"] is True and spec["ttlSecondsAfterFinished"] > 0
    assert spec["rayClusterSpec"]["rayVersion"] == ray_pin()
    # the entrypoint runs a sweep script of this repository with flags that script accepts, on the cluster
    words = shlex.split(spec["entrypoint"])
    script = next(w for w in words if re.search(r"(^|/)sweeps/\w+\.py$", w))
    assert (REPO / "sweeps" / Path(script).name).is_file()
    assert words[0] == "python" and words[1] == script
    module = importlib.import_module(f"sweeps.{Path(script).stem}")
    try:
        args = build_parser(module.STUDY).parse_args(words[2:])
    except SystemExit:
        pytest.fail(f"{script} rejects the entrypoint's flags {words[2:]} (see its usage message above)")
    assert args.address == "auto" and args.gpus_per_trial > 0
    # GPUs on the workers, the same image everywhere
    containers = ray_containers(job)
    workers = [c for name, c in containers.items() if name.startswith("worker")]
    assert workers and all(int(w["resources"]["limits"]["nvidia.com/gpu"]) >= 1 for w in workers)
    images = {c["image"] for name, c in containers.items() if name != "autoscaler"}
    assert len(images) == 1 and images == {load(CLOUD)["docker"]["image"]}, "one image on every node and cloud"


def test_rayjob_gives_every_ray_container_the_token_and_the_shared_claim():
    documents = rayjob_documents()
    job = documents["RayJob"]
    secrets = set()
    for name, container in ray_containers(job).items():
        env = {e["name"]: e for e in container.get("env", [])}
        assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", name
        ref = env.get("RAY_AUTH_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef")
        assert ref and "value" not in env["RAY_AUTH_TOKEN"], f"{name}: the token must come from a Secret"
        secrets.add((ref["name"], ref["key"]))
    assert len(secrets) == 1, secrets
    assert "Secret" not in documents, "the token Secret is created from docker/secrets/, never written here"
    # storage: a ReadWriteMany claim in this file, mounted at the same path on the head and every worker
    claim = documents["PersistentVolumeClaim"]
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    cluster = job["spec"]["rayClusterSpec"]
    pods = [cluster["headGroupSpec"]["template"]["spec"]] + [g["template"]["spec"] for g in cluster["workerGroupSpecs"]]
    for pod in pods:
        volume = next(v["name"] for v in pod["volumes"]
                      if v.get("persistentVolumeClaim", {}).get("claimName") == claim["metadata"]["name"])
        mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
        assert mounts[volume] == "/shared"
        env_sources = pod["containers"][0].get("envFrom", [])
        assert {"configMapRef": {"name": documents["ConfigMap"]["metadata"]["name"]}} in env_sources
    settings = documents["ConfigMap"]["data"]
    assert settings[cli.STORAGE_ENV].startswith("/shared/") and settings[cli.OUT_ENV].startswith("/shared/")
    assert settings["MLFLOW_TRACKING_URI"].startswith("http")
