"""User-facing errors: one readable line that names the fix, never a traceback.

Entry points catch `UserError`, print `error: <message>` on stderr and exit with
status 2. Raise it for anything the user can fix (config, data, checkpoints,
workdir); let genuine bugs surface as ordinary exceptions.
"""


class UserError(Exception):
  """An error caused by input the user controls. The message is one line."""

  def __init__(self, message: str):
    super().__init__(" ".join(str(message).split()))
