"""File-format versions. Readers refuse newer versions with a message that says what to do."""
from __future__ import annotations

# results.json and baseline files carry this; readers refuse newer versions.
SCHEMA_VERSION = 1
