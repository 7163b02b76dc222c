"""The foundation every other package stands on: the config, where files live, months, errors, database engines, where heavy work runs, and the names shared by DAGs, plugins and tests."""
