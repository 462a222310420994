"""Why a network learns or not. `verdicts` is the diagnosis engine, pure (plain data in, a
`Diagnosis` out); beside it, what feeds and records it: the recorders that are training
callbacks (`history`, `activations`, `live`), the sink that tags, logs and stores what it says
(`sink`), the plots and the report, the replay of a finished run (`replay`), and
`session.Diagnostics`, which puts them together for one run. This module imports nothing, so
importing the engine imports none of them."""
