"""Test data sets written differently from the bundled sample (other column names, other
tables, other id formats), each by its own small generator, so that no notebook is tested only
on data its own generator made."""
