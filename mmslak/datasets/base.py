"""The check every mmslak dataset shares: it has at least one sample."""
from .checks import no_samples_error

__all__ = ['NonEmptyMixin']


class NonEmptyMixin:
    """Raise ``no samples found under <root>`` instead of mmengine's
    ``need at least one array to concatenate`` when the dataset (after the
    upstream filtering) is empty. Mix in before an mmengine ``BaseDataset``
    subclass."""

    def filter_data(self):
        loaded = len(self.data_list)
        data_list = super().filter_data()
        if data_list:
            return data_list
        details = [f'data_prefix {dict(self.data_prefix)}']
        if self.ann_file:
            details.append(f'ann_file {self.ann_file!r}')
        if loaded:
            details.append(f'all {loaded} loaded samples were removed by '
                           f'filter_cfg {self.filter_cfg}')
        raise no_samples_error(
            self.data_root or self.ann_file or str(dict(self.data_prefix)),
            '; '.join(details))
