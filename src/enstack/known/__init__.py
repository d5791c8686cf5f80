"""Known vulnerabilities: a base of functions whose CVE fix is known (`enstack known build`),
and the scanner's check of each scanned function against it (`enstack scan --known KB`).

normalise.py  a function as abstracted statements (what is compared)
signature.py  what a fix deleted and added; whether a function still holds the flaw
base.py       the base on disk (SQLite + a verified manifest) and its candidate index
build.py      fix pairs from datasets and from a repository's fixing commits
match.py      scanned functions against the base: findings that name the CVE
"""
