"""User-facing errors: one readable line that names the fix, never a traceback.

Entry points catch `UserError`, print `error: <message>` on stderr and exit with
status 2; they catch `Preempted` (a run stopped by a signal after saving a checkpoint),
print its one line and exit with its status. Raise it for anything the user can fix (config, data, checkpoints,
workdir); let genuine bugs surface as ordinary exceptions.
"""


class UserError(Exception):
  """An error caused by input the user controls. The message is one line."""

  def __init__(self, message: str):
    super().__init__(" ".join(str(message).split()))


class Preempted(Exception):
  """A run stopped by a signal once its checkpoint was saved; the message is one line.

  SIGTERM (preemption; exit status 0, the scheduler asked for it) or SIGINT (Ctrl-C;
  exit status 130, as a shell reports an interrupted command)."""

  def __init__(self, message: str, exit_code: int = 0):
    super().__init__(" ".join(str(message).split()))
    self.exit_code = exit_code
