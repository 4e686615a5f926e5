"""Extra ``carspatial`` subcommands, one module each (discovered by ``cli.py``).

A module here defines ``NAME`` (the subcommand), ``HELP`` (one line), ``add_arguments(parser)``
and ``run(args) -> int``. Import heavy things inside ``run``. ``SampleError`` raised from ``run``
is shown as a clean one-line error with exit code 2.
"""
