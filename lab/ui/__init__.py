"""The Gradio lab: one module per tab, the background job manager, and app.build_app() that puts them together.

The UI knows nothing of training internals: it builds a lab.config.TrainConfig and hands it to
lab.experiment.train (or lab.lr_finder.range_test) in the job manager's one background thread.
"""
