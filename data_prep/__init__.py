"""Dataset converters: raw dataset folders -> one aunet HDF5 frame store per dataset.

Run ``python -m data_prep --help``; each converter lives in its own module with a
``configure(parser)`` that adds its arguments and a ``main(args)`` that does the work.
"""
