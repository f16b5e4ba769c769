"""Corpus adapters, one module per corpus (`crema_d`, `ravdess`, `emodb`, `iemocap_audio`, `msp_improv`,
`iemocap_mmin`, `cmu_mosei`), and `registry` (`CORPORA`: every corpus by name). Importing this package imports none
of them, so that code using one adapter depends on that adapter alone."""
