"""The operator UI's page data: Airflow-free assembly of what the "Shadow Regions" page shows.

``shadowing.ui.pages`` reads the warehouse (an Engine is passed in, nothing else: no AWS call on page load),
``shadowing.ui.capacity`` / ``graph_layout`` / ``diff`` are pure shaping functions, ``shadowing.ui.web`` builds
the FastAPI app (auth and engine injected by the Airflow plugin in ``plugins/``), and ``assets/`` holds the
HTML/JS/CSS served by it — vendored, no CDN, so the page works offline.
"""
