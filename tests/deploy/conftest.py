from tests.drive.conftest import mounted_drive, user_api  # noqa: F401 - the drive fixtures, reused
