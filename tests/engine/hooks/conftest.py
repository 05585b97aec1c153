import pytest


@pytest.fixture
def train_logged(caplog):
    """``train_logged(runner)`` trains and returns what the runner logged
    (MMLogger calls its own handlers only, so caplog must be added)."""

    def train(runner) -> str:
        runner.logger.addHandler(caplog.handler)
        try:
            runner.train()
        finally:
            runner.logger.removeHandler(caplog.handler)
        return caplog.text

    return train
