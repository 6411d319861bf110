"""Files, folders, arguments and messages as every program meets its user.

files.py  atomic writes, regular-file checks, one-line errors (UserFileError)
outdir.py  output folders: a lock, staging beside the target, replacement only when complete
fields.py  typed fields of JSON records, checked with the file and field named
signals.py  SIGINT / SIGTERM: finish the step, then exit 130 / 143
console.py arguments.py runlog.py progress.py  messages, argument types, the run log, progress lines
"""
