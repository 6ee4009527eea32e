# Root conftest: the plugin itself is loaded through its pytest11 entry point (pip install -e .).
# Nothing else belongs here; suite logic lives in pytest_nvme_ai/.
