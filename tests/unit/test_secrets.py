"""Passwords in URIs are hidden wherever a URI is shown or recorded; everything else in the text stays as it was."""
import base64

import pytest

from tracking.run_layout import _health_request, ui_base_url
from tracking.secrets import redact, without_user_info


@pytest.mark.parametrize("uri, shown", [
    ("postgresql+psycopg2://mlflow:s3cr%40t@db:5432/mlflow", "postgresql+psycopg2://mlflow:***@db:5432/mlflow"),
    ("http://alice:pa:ss@mlflow.example:5000", "http://alice:***@mlflow.example:5000"),
    ("mysql://root:@localhost/mlflow", "mysql://root:***@localhost/mlflow"),
    ("s3://AKIA:wJalr/abc@bucket/key", "s3://AKIA:***@bucket/key"),
])
def test_a_password_in_a_uri_is_replaced_wherever_it_sits_in_a_text(uri, shown):
    assert redact(f"error: cannot open {uri}; retry {uri}") == f"error: cannot open {shown}; retry {shown}"


@pytest.mark.parametrize("text", [
    "sqlite:///mlflow.db", "http://127.0.0.1:5000", "postgresql://postgres@127.0.0.1:5432/mlflow",
    "s3://bucket/prefix", "--betas 0.5 4 --name run:1@lab", "/shared/tune",
])
def test_text_without_a_password_is_left_as_it_is(text):
    assert redact(text) == text


def test_links_for_a_browser_carry_no_user_info():
    assert without_user_info("https://alice:secret@mlflow.example/") == "https://mlflow.example/"
    assert ui_base_url("http://alice:secret@mlflow.example:5000") == "http://mlflow.example:5000"


def test_the_health_check_sends_credentials_as_basic_auth_not_as_part_of_the_host():
    request = _health_request("http://alice:s%40cret@mlflow.example:5000/")
    assert request.full_url == "http://mlflow.example:5000/health"
    assert base64.b64decode(request.get_header("Authorization").removeprefix("Basic ")) == b"alice:s@cret"
