# shellcheck shell=bash
# tools/env.sh — environment for running ngtrain's MPI jobs from the project's scripts.
# Sourced by tools/demo.sh, tools/test.sh and the e2e tests.
# Open MPI refuses to run as root unless told (CI runs as root); the demo and tests start
# more ranks than a 2-core machine has cores; the CMA single-copy path needs ptrace,
# which containers often forbid.
export OMPI_ALLOW_RUN_AS_ROOT=1
export OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_mpi_yield_when_idle=1
# one BLAS thread per rank unless the user chose otherwise
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
