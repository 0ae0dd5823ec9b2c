pytest_plugins = ["conftest_servers"]
