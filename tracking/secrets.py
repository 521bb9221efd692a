"""Passwords in URIs never leave the process: what a sweep prints, records (sweep.json, report.html) or logs shows
`scheme://user:***@host` instead. Users paste tracking and storage URIs with passwords in them
(`postgresql://mlflow:PASSWORD@db/mlflow`); the process keeps the real URI to connect with and nothing else does.
Tools that reconnect later (`python -m analysis sync`) take the URI again from --mlflow-uri or MLFLOW_TRACKING_URI."""
import re

REDACTED = "***"
# scheme://user:password@ — the password is anything up to the '@' that ends the user info
_PASSWORD_IN_URI = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*:)[^@\s]*@")


def redact(text: str) -> str:
    """`text` with the password of every URI in it replaced by ***."""
    return _PASSWORD_IN_URI.sub(lambda match: f"{match['head']}{REDACTED}@", text)


def without_user_info(uri: str) -> str:
    """The URI with no user name or password (for links a browser opens)."""
    return re.sub(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)[^/@\s]*@", r"\g<scheme>", uri)
